-- VTP initial schema: the ten tables a course runs on.
-- ON DELETE choices: content owned by a course (lessons, sessions, assignments,
-- enrollments) goes with the course; a user's own work (submissions, chat, attendance)
-- goes with the user; things other people depend on (courses a teacher created,
-- grades a teacher gave, recordings) keep the row and RESTRICT or SET NULL instead.

CREATE OR REPLACE FUNCTION vtp_touch_updated_at() RETURNS trigger AS $$
BEGIN
    NEW.updated_at = now();
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TABLE users (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email          text NOT NULL,
    display_name   text NOT NULL CHECK (length(display_name) BETWEEN 1 AND 120),
    password_hash  text NOT NULL,
    role           text NOT NULL DEFAULT 'student'
                   CHECK (role IN ('student', 'teacher', 'admin')),
    is_active      boolean NOT NULL DEFAULT true,
    last_login_at  timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_email_format CHECK (email ~ '^[^@\s]+@[^@\s]+$' AND length(email) <= 254)
);
-- E-mail addresses are unique whatever their case.
CREATE UNIQUE INDEX users_email_lower_key ON users (lower(email));
CREATE INDEX users_role_idx ON users (role);

CREATE TABLE courses (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    code             text NOT NULL CHECK (length(code) BETWEEN 1 AND 40),
    title            text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    description      text NOT NULL DEFAULT '',
    owner_id         uuid NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
    status           text NOT NULL DEFAULT 'active'
                     CHECK (status IN ('draft', 'active', 'archived')),
    enrollment_code  text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT courses_code_key UNIQUE (code),
    CONSTRAINT courses_enrollment_code_key UNIQUE (enrollment_code)
);
CREATE INDEX courses_owner_id_idx ON courses (owner_id);
CREATE INDEX courses_status_idx ON courses (status);

CREATE TABLE course_enrollments (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    course_id   uuid NOT NULL REFERENCES courses (id) ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role        text NOT NULL DEFAULT 'student'
                CHECK (role IN ('student', 'teacher', 'ta', 'observer')),
    status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'dropped')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT course_enrollments_course_user_key UNIQUE (course_id, user_id)
);
CREATE INDEX course_enrollments_user_id_idx ON course_enrollments (user_id);

CREATE TABLE lessons (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    course_id     uuid NOT NULL REFERENCES courses (id) ON DELETE CASCADE,
    position      integer NOT NULL CHECK (position >= 0),
    title         text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    content_md    text NOT NULL DEFAULT '',
    status        text NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'published')),
    published_at  timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT lessons_course_position_key UNIQUE (course_id, position)
        DEFERRABLE INITIALLY IMMEDIATE
);

CREATE TABLE live_sessions (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    course_id        uuid NOT NULL REFERENCES courses (id) ON DELETE CASCADE,
    lesson_id        uuid REFERENCES lessons (id) ON DELETE SET NULL,
    host_id          uuid NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
    title            text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    status           text NOT NULL DEFAULT 'scheduled'
                     CHECK (status IN ('scheduled', 'live', 'ended', 'cancelled')),
    auto_record      boolean NOT NULL DEFAULT false,
    scheduled_start  timestamptz NOT NULL,
    scheduled_end    timestamptz NOT NULL,
    started_at       timestamptz,
    ended_at         timestamptz,
    room_name        text NOT NULL DEFAULT gen_random_uuid()::text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT live_sessions_room_name_key UNIQUE (room_name),
    CONSTRAINT live_sessions_schedule_order CHECK (scheduled_end > scheduled_start),
    CONSTRAINT live_sessions_run_order CHECK (ended_at IS NULL OR started_at IS NULL
                                               OR ended_at >= started_at)
);
CREATE INDEX live_sessions_course_start_idx ON live_sessions (course_id, scheduled_start);
CREATE INDEX live_sessions_lesson_id_idx ON live_sessions (lesson_id);
CREATE INDEX live_sessions_host_id_idx ON live_sessions (host_id);
CREATE INDEX live_sessions_status_idx ON live_sessions (status)
    WHERE status IN ('scheduled', 'live');

CREATE TABLE session_participants (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    session_id     uuid NOT NULL REFERENCES live_sessions (id) ON DELETE CASCADE,
    user_id        uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role           text NOT NULL DEFAULT 'viewer'
                   CHECK (role IN ('presenter', 'viewer')),
    joined_at      timestamptz NOT NULL DEFAULT now(),
    left_at        timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT session_participants_order CHECK (left_at IS NULL OR left_at >= joined_at)
);
-- One row per join; attendance sums the intervals of a user's rows.
CREATE INDEX session_participants_session_user_idx
    ON session_participants (session_id, user_id);
CREATE INDEX session_participants_user_id_idx ON session_participants (user_id);

CREATE TABLE recordings (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    session_id    uuid NOT NULL REFERENCES live_sessions (id) ON DELETE RESTRICT,
    started_by    uuid REFERENCES users (id) ON DELETE SET NULL,
    status        text NOT NULL DEFAULT 'recording'
                  CHECK (status IN ('recording', 'uploading', 'available', 'failed')),
    object_key    text,
    size_bytes    bigint CHECK (size_bytes IS NULL OR size_bytes >= 0),
    duration_ms   bigint CHECK (duration_ms IS NULL OR duration_ms >= 0),
    sha256        text CHECK (sha256 IS NULL OR sha256 ~ '^[0-9a-f]{64}$'),
    error         text,
    started_at    timestamptz NOT NULL DEFAULT now(),
    ended_at      timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT recordings_object_key_key UNIQUE (object_key)
);
CREATE INDEX recordings_session_id_idx ON recordings (session_id);
CREATE INDEX recordings_started_by_idx ON recordings (started_by);
CREATE INDEX recordings_status_idx ON recordings (status)
    WHERE status IN ('recording', 'uploading');

CREATE TABLE assignments (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    course_id           uuid NOT NULL REFERENCES courses (id) ON DELETE CASCADE,
    lesson_id           uuid REFERENCES lessons (id) ON DELETE SET NULL,
    created_by          uuid REFERENCES users (id) ON DELETE SET NULL,
    title               text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    instructions_md     text NOT NULL DEFAULT '',
    points_possible     numeric(8, 2) NOT NULL DEFAULT 100 CHECK (points_possible >= 0),
    status              text NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'published')),
    unlock_at           timestamptz,
    due_at              timestamptz,
    lock_at             timestamptz,
    allowed_attempts    integer CHECK (allowed_attempts IS NULL OR allowed_attempts > 0),
    allowed_file_types  text[] NOT NULL DEFAULT '{}',
    max_file_bytes      bigint NOT NULL DEFAULT 10485760 CHECK (max_file_bytes > 0),
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT assignments_dates_order CHECK (
        (unlock_at IS NULL OR due_at IS NULL OR unlock_at <= due_at)
        AND (due_at IS NULL OR lock_at IS NULL OR due_at <= lock_at))
);
CREATE INDEX assignments_course_due_idx ON assignments (course_id, due_at);
CREATE INDEX assignments_lesson_id_idx ON assignments (lesson_id);
CREATE INDEX assignments_created_by_idx ON assignments (created_by);

CREATE TABLE submissions (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    assignment_id  uuid NOT NULL REFERENCES assignments (id) ON DELETE CASCADE,
    student_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    attempt        integer NOT NULL DEFAULT 1 CHECK (attempt > 0),
    status         text NOT NULL DEFAULT 'draft'
                   CHECK (status IN ('draft', 'submitted', 'graded', 'returned')),
    body_text      text NOT NULL DEFAULT '',
    files          jsonb NOT NULL DEFAULT '[]'::jsonb,
    submitted_at   timestamptz,
    is_late        boolean NOT NULL DEFAULT false,
    score          numeric(8, 2) CHECK (score IS NULL OR score >= 0),
    feedback       text,
    graded_by      uuid REFERENCES users (id) ON DELETE SET NULL,
    graded_at      timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT submissions_attempt_key UNIQUE (assignment_id, student_id, attempt)
);
CREATE INDEX submissions_student_id_idx ON submissions (student_id);
CREATE INDEX submissions_graded_by_idx ON submissions (graded_by);
CREATE INDEX submissions_assignment_status_idx ON submissions (assignment_id, status);

CREATE TABLE chats (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    course_id   uuid NOT NULL REFERENCES courses (id) ON DELETE CASCADE,
    session_id  uuid REFERENCES live_sessions (id) ON DELETE CASCADE,
    author_id   uuid REFERENCES users (id) ON DELETE SET NULL,
    body        text NOT NULL CHECK (length(body) BETWEEN 1 AND 4000),
    edited_at   timestamptz,
    deleted_at  timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
-- History is read newest-first per channel with a (created_at, id) cursor.
CREATE INDEX chats_course_created_idx ON chats (course_id, created_at DESC, id DESC);
CREATE INDEX chats_session_created_idx ON chats (session_id, created_at DESC, id DESC)
    WHERE session_id IS NOT NULL;
CREATE INDEX chats_author_id_idx ON chats (author_id);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['users', 'courses', 'course_enrollments', 'lessons',
                             'live_sessions', 'session_participants', 'recordings',
                             'assignments', 'submissions', 'chats']
    LOOP
        EXECUTE format('CREATE TRIGGER %I_touch_updated_at BEFORE UPDATE ON %I '
                       'FOR EACH ROW EXECUTE FUNCTION vtp_touch_updated_at()', t, t);
    END LOOP;
END;
$$;
