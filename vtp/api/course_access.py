"""Course-level permissions, decided per request from `course_enrollments`.

The one rule every course route applies:

* a site **admin** may do everything;
* the course **owner** counts as a teacher of the course;
* otherwise the caller's role is their *active* enrollment's role (student, teacher,
  ta, observer) or nothing;
* a caller with no role in the course (and not admin) gets **404** for the course's
  content - it is invisible to them, so its existence is not revealed;
* a member whose role is not allowed to act gets **403**;
* writes to an archived course get **409 course_archived** (it is read-only).

Resource routes (a session, an assignment, ...) load their row, then call
`require_course_role` with its course id; rows a student may not see yet (a draft
assignment or lesson) answer 404 to them as well.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Literal, TypeVar

import asyncpg
from aiohttp import web

from vtp.api.access import principal_of
from vtp.api.errors import ApiError, forbidden, not_found
from vtp.appkeys import DB
from vtp.auth.principal import Principal
from vtp.db.models import Course

H = TypeVar("H", bound=Callable[..., object])
_WHO = "__vtp_who__"


def who(description: str) -> Callable[[H], H]:
    """Say, for the API reference, who may call a route at the course level (the handler
    enforces it with `require_course_role`; the RBAC matrix test checks the behaviour)."""

    def mark(handler: H) -> H:
        setattr(handler, _WHO, description)
        return handler

    return mark


def who_of(handler: object) -> str | None:
    value = getattr(handler, _WHO, None)
    return value if isinstance(value, str) else None


CourseRole = Literal["teacher", "ta", "student", "observer"]
COURSE_ROLES: tuple[CourseRole, ...] = ("teacher", "ta", "student", "observer")

TEACHER: frozenset[CourseRole] = frozenset({"teacher"})
STAFF: frozenset[CourseRole] = frozenset({"teacher", "ta"})
STUDENT: frozenset[CourseRole] = frozenset({"student"})
PARTICIPANTS: frozenset[CourseRole] = frozenset({"teacher", "ta", "student"})
MEMBERS: frozenset[CourseRole] = frozenset(COURSE_ROLES)


@dataclass(frozen=True, slots=True)
class CourseAccess:
    course: Course
    principal: Principal
    role: CourseRole | None  # None: not a member

    @property
    def is_admin(self) -> bool:
        return self.principal.role == "admin"

    @property
    def is_member(self) -> bool:
        return self.is_admin or self.role is not None

    @property
    def is_staff(self) -> bool:
        return self.can(STAFF)

    @property
    def is_teacher(self) -> bool:
        return self.can(TEACHER)

    def can(self, roles: Iterable[CourseRole]) -> bool:
        return self.is_admin or (self.role is not None and self.role in set(roles))

    @property
    def user_id(self) -> uuid.UUID:
        return self.principal.user_id


async def load_course_access(
    conn: asyncpg.Connection | asyncpg.Pool, principal: Principal, course_id: uuid.UUID
) -> CourseAccess | None:
    row = await conn.fetchrow(
        """SELECT c.*,
                  CASE WHEN c.owner_id = $2 THEN 'teacher' ELSE e.role END AS my_role
           FROM courses c
           LEFT JOIN course_enrollments e
                  ON e.course_id = c.id AND e.user_id = $2 AND e.status = 'active'
           WHERE c.id = $1""",
        course_id,
        principal.user_id,
    )
    if row is None:
        return None
    return CourseAccess(Course.from_record(row), principal, row["my_role"])


async def require_course_role(
    request: web.Request,
    course_id: uuid.UUID,
    roles: Iterable[CourseRole],
    *,
    write: bool = False,
    conn: asyncpg.Connection | None = None,
    missing: str = "no such course",
) -> CourseAccess:
    """The caller's access to the course, or 404 (not visible) / 403 (not allowed).

    `missing` is the 404 message, naming the resource the caller asked for."""
    principal = principal_of(request)
    access = await load_course_access(conn or request.app[DB], principal, course_id)
    if access is None or not access.is_member:
        raise not_found(missing)
    return enforce(access, roles, write=write)


def require_student(access: CourseAccess) -> CourseAccess:
    """Student-only actions (handing in work, "my grades"): admins and staff are not
    students of the course, so they get 403 here too."""
    if access.role != "student":
        raise forbidden("only students of this course may do this")
    return access


def enforce(
    access: CourseAccess, roles: Iterable[CourseRole], *, write: bool = False
) -> CourseAccess:
    """403 unless the member's role is in `roles`; 409 for writes to an archived course."""
    if not access.can(roles):
        raise forbidden("your role in this course does not allow this")
    if write and access.course.status == "archived":
        raise ApiError(409, "course_archived", "the course is archived and read-only")
    return access


@contextlib.contextmanager
def referenced_rows_exist(error: ApiError) -> Iterator[None]:
    """A row referenced by an insert or update (a parent, a lesson) was deleted by a
    concurrent request after we looked: answer `error`, not 500."""
    try:
        yield
    except asyncpg.ForeignKeyViolationError as exc:
        raise error from exc
