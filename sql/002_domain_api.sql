-- Teaching-domain API (issue 7): indexes for every list query's filter + keyset order,
-- lesson attachments, and a per-session "students may publish" switch.

-- Lists are ordered by (created_at, id) and paged with a keyset cursor.
CREATE INDEX courses_created_idx ON courses (created_at, id);
CREATE INDEX courses_status_created_idx ON courses (status, created_at, id);
CREATE INDEX course_enrollments_course_created_idx
    ON course_enrollments (course_id, created_at, id);
CREATE INDEX live_sessions_course_created_idx ON live_sessions (course_id, created_at, id);
CREATE INDEX assignments_course_created_idx ON assignments (course_id, created_at, id);
CREATE INDEX submissions_assignment_created_idx ON submissions (assignment_id, created_at, id);
CREATE INDEX submissions_assignment_student_idx
    ON submissions (assignment_id, student_id, created_at, id);
CREATE INDEX recordings_session_created_idx ON recordings (session_id, created_at, id);
-- The course channel is the chat rows without a session, read newest first.
CREATE INDEX chats_course_channel_idx ON chats (course_id, created_at DESC, id DESC)
    WHERE session_id IS NULL;

-- A student has at most one draft per assignment (it becomes the next attempt).
CREATE UNIQUE INDEX submissions_one_draft_key ON submissions (assignment_id, student_id)
    WHERE status = 'draft';

-- Lesson attachments: [{"id", "name", "size", "content_type", "key", "sha256"}], files
-- in the object store under lessons/<lesson id>/.
ALTER TABLE lessons ADD COLUMN attachments jsonb NOT NULL DEFAULT '[]'::jsonb
    CHECK (jsonb_typeof(attachments) = 'array');

-- Viewers of a live session may publish (camera/microphone) only when this is on.
ALTER TABLE live_sessions ADD COLUMN students_may_publish boolean NOT NULL DEFAULT false;
