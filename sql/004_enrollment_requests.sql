-- Re-joining after removal (issue 11): a student a teacher unenrolled is 'removed', not
-- 'dropped' (which is a member who left by themself), and the course's enrolment code no
-- longer lets them back in by itself: their join becomes a 'requested' enrolment that a
-- teacher approves (POST /courses/{id}/enrollments) or declines (DELETE, back to
-- 'removed'). Neither gives any access to the course: only 'active' does.
ALTER TABLE course_enrollments DROP CONSTRAINT course_enrollments_status_check;
ALTER TABLE course_enrollments ADD CONSTRAINT course_enrollments_status_check
    CHECK (status IN ('active', 'dropped', 'removed', 'requested'));
