"""A term in miniature through the course pages, in headless Chromium against the real
server: a teacher creates a course (dashboard), a lesson and an assignment (course page);
two students join with the enrolment code; one hands in two files on time, the other
one file after the teacher moved the due date (late); the teacher grades both from the
queue and returns them; each student sees only their own grade; the gradebook CSV the
page downloads is the server's. Every page is checked with axe-core (no serious or
critical violations) and photographed at desktop and phone width."""

from __future__ import annotations

import asyncio
import csv
import io
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from classroom_kit import (
    PHONE,
    Server,
    browser_fixture,  # noqa: F401  (module fixture)
    check_page,
    decoding,
    join_class,
    server_fixture,  # noqa: F401  (module fixture)
    signed_in_page,
)

from tests.support.chromium import needs_chromium
from tests.support.waiting import eventually

pytestmark = [
    pytest.mark.browser,
    needs_chromium,
    pytest.mark.asyncio(loop_scope="module"),
]

TEACHER_TZ = "America/New_York"
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


def teacher_local(ts: float) -> str:
    """`ts` as the teacher's datetime-local input takes it (wall-clock time in New York)."""
    return datetime.fromtimestamp(ts, ZoneInfo(TEACHER_TZ)).strftime("%Y-%m-%dT%H:%M")


async def text_of(locator: Any) -> str:
    text: str = await locator.inner_text()
    return text


async def test_a_term_in_miniature(server: Server, browser: Any) -> None:
    teacher = await server.user("Ms Okafor", role="teacher")
    ada = await server.user("Ada Byron")
    ben = await server.user("Ben Osei")
    # The teacher is in New York, the students in UTC: each types and reads dates in their
    # own time zone.
    tp = await signed_in_page(browser, server, teacher, timezone_id=TEACHER_TZ)

    # The teacher makes a course on the dashboard and follows its title to the course page.
    await tp.goto(server.base + "/dashboard")
    await tp.get_by_text("New course").click()
    await tp.get_by_label("Course code").fill("CHEM-1")
    await tp.get_by_label("Course title").fill("Chemistry")
    await tp.get_by_role("button", name="Create course").click()
    await tp.get_by_text("Course “Chemistry” created.").wait_for()
    assert await tp.get_by_label("Course code").is_hidden()  # the form closed
    assert await tp.locator("#enrol-code").is_hidden()  # a student's box
    await tp.get_by_role("link", name="Chemistry").click()
    await tp.wait_for_url("**/courses/*")
    course_id = tp.url.rsplit("/", 1)[1]
    await tp.get_by_role("heading", name="Chemistry").wait_for()
    code = await tp.locator("[data-code]").inner_text()
    assert code.startswith("CHEM-1-")

    # A lesson, then an assignment: 10 points, two attempts, PDFs and text, due tomorrow.
    await tp.get_by_text("New lesson").click()
    await tp.get_by_label("Title", exact=True).first.fill("Atoms")
    await tp.get_by_label("Content").fill("# Atoms\nEverything is **made** of them.")
    await tp.get_by_role("button", name="Create lesson").click()
    await tp.locator("[data-lessons]").get_by_role("link", name="Atoms").wait_for()

    await tp.get_by_text("New assignment").click()
    form = tp.get_by_role("form", name="Create assignment")
    await form.get_by_label("Title").fill("Lab report 1")
    await form.get_by_label("Instructions").fill(
        "Write up the **titration**.\n\n- method\n- results"
    )
    await form.get_by_label("Points").fill("10")
    await form.get_by_label("Attempts allowed").fill("2")
    await form.get_by_label("Allowed file types").fill("pdf, txt")
    due = time.time() + 86400
    await form.get_by_label("Due").fill(teacher_local(due))
    # A lock date before the due date: the server's message is shown by the button.
    await form.get_by_label("Locks").fill(teacher_local(time.time()))
    await form.get_by_role("button", name="Create assignment").click()
    error = form.get_by_role("alert")
    await eventually(lambda: _has(error, "dates must be in order"), 10, "the date order error")
    assert await form.get_by_label("Title").input_value() == "Lab report 1"  # nothing lost
    await form.get_by_label("Locks").fill("")
    await form.get_by_role("button", name="Create assignment").click()
    assignments = tp.locator("[data-assignments]")
    await assignments.get_by_role("link", name="Lab report 1").wait_for()
    stored = await server.call("GET", f"/api/v1/courses/{course_id}/assignments", teacher)
    due_at = datetime.fromisoformat(stored["items"][0]["due_at"])
    assert abs(due_at.timestamp() - due) < 60, (due_at, due)  # New York time, read as such
    assignment_id = await assignments.get_by_role("link", name="Lab report 1").get_attribute("href")
    # A second lesson, moved before the first.
    await tp.get_by_text("New lesson").click()
    await tp.get_by_label("Title", exact=True).first.fill("Bonds")
    await tp.get_by_role("button", name="Create lesson").click()
    lessons = tp.locator("[data-lessons]")
    await lessons.get_by_role("button", name="Move up: Bonds").click()
    await eventually(
        lambda: _has(lessons.locator("li").first, "Bonds"), 10, "Bonds moved to the top"
    )
    await check_page(tp, "course-teacher")

    # The lesson page: an attachment uploaded with progress; Markdown that injects nothing.
    await lessons.get_by_role("link", name="Atoms").click()
    await tp.get_by_role("heading", name="Atoms", level=1).wait_for()
    await tp.get_by_label("Attach files").set_input_files(
        [{"name": "table.pdf", "mimeType": "application/pdf", "buffer": PDF}]
    )
    await tp.get_by_role("button", name="Download table.pdf").wait_for()
    await tp.get_by_text("Edit lesson").click()
    await tp.get_by_label("Content").fill(
        "## Parts\nSee the [periodic table](https://example.org/pt).\n\n"
        '<img src=x onerror="window.pwned=1"> [bad](javascript:window.pwned=1)\n\n'
        "1. protons\n2. neutrons"
    )
    await tp.get_by_role("button", name="Save lesson").click()
    await tp.get_by_text("Lesson saved.").wait_for()
    content = tp.locator("[data-content]")
    link = content.get_by_role("link", name="periodic table")
    assert await link.get_attribute("href") == "https://example.org/pt"
    assert await content.locator("img, script, a[href^='javascript']").count() == 0
    assert '<img src=x onerror="window.pwned=1">' in await content.inner_text()
    assert await content.locator("ol li").count() == 2
    await check_page(tp, "lesson-teacher")

    # Both students join with the code.
    pages = {}
    for student in (ada, ben):
        sp = await signed_in_page(browser, server, student, viewport=PHONE)
        await sp.goto(server.base + "/dashboard")
        await sp.get_by_label("Enrolment code").fill(code)
        await sp.get_by_role("button", name="Join course").click()
        await sp.get_by_role("link", name="Chemistry").click()
        await sp.wait_for_url(f"**/courses/{course_id}")
        status = sp.locator("[data-assignments]").get_by_text("Not started")
        await status.wait_for()
        pages[student.name] = sp
    ap, bp = pages["Ada Byron"], pages["Ben Osei"]
    await ap.get_by_label("Message to the course").fill("Is the lab on Friday?")
    await ap.get_by_role("button", name="Send").click()
    await ap.locator("[data-course-chat]").get_by_text("Is the lab on Friday?").wait_for()
    await check_page(ap, "course-student")
    await ap.locator("[data-lessons]").get_by_role("link", name="Atoms").click()
    async with ap.expect_download() as dl:
        await ap.get_by_role("button", name="Download table.pdf").click()
    assert await asyncio.to_thread(Path(str(await (await dl.value).path())).read_bytes) == PDF
    assert not await ap.get_by_label("Attach files").is_visible()
    await check_page(ap, "lesson-student")
    await ap.go_back()

    # Ada hands in two files on time; a refused type is said by the file picker.
    await ap.locator("[data-assignments]").get_by_role("link", name="Lab report 1").click()
    await ap.get_by_role("heading", name="Lab report 1").wait_for()
    assert await ap.locator("[data-instructions] strong").inner_text() == "titration"
    assert "times in UTC" in await text_of(ap.locator("[data-sub]"))
    picker = ap.get_by_label("Add files")
    await picker.set_input_files(
        [{"name": "photo.png", "mimeType": "image/png", "buffer": b"\x89PNG\r\n\x1a\n"}]
    )
    await eventually(
        lambda: _has(ap.locator("[data-work] [role=alert]"), "only pdf, txt"), 5, "type refusal"
    )
    await picker.set_input_files(
        [
            {"name": "report.pdf", "mimeType": "application/pdf", "buffer": PDF},
            {"name": "data.txt", "mimeType": "text/plain", "buffer": b"volume,ml\n1,25.0\n"},
        ]
    )
    files = ap.get_by_role("list", name="Files in this attempt")
    await files.get_by_role("button", name="Download data.txt").wait_for()
    await files.get_by_role("button", name="Download report.pdf").wait_for()
    await check_page(ap, "assignment-student-draft")
    await ap.get_by_role("button", name="Hand in").click()
    await ap.locator("[data-status]").get_by_text("Submitted", exact=True).wait_for()

    # The teacher moves the due date into the past; Ben's file then arrives late.
    await tp.goto(server.base + str(assignment_id))
    await tp.locator("[data-queue]").get_by_text("Not handed in (1): Ben Osei").wait_for()
    await tp.get_by_text("Edit assignment").click()
    edit = tp.get_by_role("form", name="Save changes")
    await edit.get_by_label("Due").fill(teacher_local(time.time() - 3600))
    await edit.get_by_role("button", name="Save changes").click()
    await tp.get_by_text("Assignment saved.").wait_for()

    await bp.goto(server.base + str(assignment_id))
    await bp.get_by_label("Add files").set_input_files(
        [{"name": "late.txt", "mimeType": "text/plain", "buffer": b"sorry\n"}]
    )
    await bp.get_by_role("button", name="Download late.txt").wait_for()
    await bp.get_by_role("button", name="Hand in").click()
    await bp.locator("[data-status]").get_by_text("Submitted late").wait_for()

    # The teacher grades from the queue: Ada returned at once, Ben graded then bulk-returned.
    await tp.reload()
    queue = tp.locator("[data-queue]")
    await queue.get_by_text("Ben Osei · attempt 1").wait_for()
    assert "Late" in await text_of(queue.locator("li", has_text="Ben Osei"))
    await queue.get_by_role("button", name="Open Ada Byron's attempt 1").click()
    grader = tp.locator("[data-grader]")
    await grader.get_by_role("button", name="Download report.pdf").wait_for()
    async with tp.expect_download() as dl:
        await grader.get_by_role("button", name="Download data.txt").click()
    assert (await dl.value).suggested_filename == "data.txt"
    await grader.get_by_label("Score (out of 10)").fill("11")
    await grader.get_by_role("button", name="Save grade").click()
    await eventually(lambda: _has(grader.get_by_role("alert"), "at most 10"), 10, "score cap")
    await grader.get_by_label("Score (out of 10)").fill("8.5")
    await grader.get_by_label("Feedback").fill("Clear method.")
    await grader.get_by_role("button", name="Save and return").click()
    await queue.locator("li", has_text="Ada Byron").get_by_text("Returned").wait_for()
    await grader.get_by_role("button", name="Next").click()
    await grader.get_by_role("heading", name="Ben Osei · attempt 1").wait_for()
    # By keyboard alone: from the grader's heading (focused on opening) to the score.
    for _ in range(8):
        if await tp.evaluate("document.activeElement.id") == "grade-score":
            break
        await tp.keyboard.press("Tab")
    assert await tp.evaluate("document.activeElement.id") == "grade-score"
    await tp.keyboard.type("6")
    await tp.keyboard.press("Tab")  # feedback
    await tp.keyboard.press("Tab")  # Save grade
    await tp.keyboard.press("Enter")
    await tp.get_by_text("Grade saved for Ben Osei.").wait_for()
    await queue.get_by_role("button", name="Return all graded (1)").click()
    await queue.locator("li", has_text="Ben Osei").get_by_text("Returned").wait_for()
    await check_page(tp, "assignment-teacher-grading")
    # With submissions it cannot be deleted: the server says so by the button.
    await tp.get_by_text("Edit assignment").click()
    tp.once("dialog", lambda dialog: dialog.accept())
    await tp.get_by_role("button", name="Delete assignment").click()
    await tp.get_by_text("An assignment with submissions cannot be deleted.").wait_for()

    # Each student sees their own grade, and only theirs.
    await ap.reload()
    await ap.locator("[data-status]").get_by_text("Returned: 8.5 / 10").wait_for()
    assert "Clear method." in await text_of(ap.locator("[data-attempts]"))
    await check_page(ap, "assignment-student-returned")
    await ap.goto(f"{server.base}/courses/{course_id}/gradebook")
    table = ap.locator("[data-table] table")
    await table.get_by_role("row", name="Lab report 1").get_by_text("8.5 / 10").wait_for()
    assert "Ben" not in await text_of(ap.locator("main"))
    await check_page(ap, "gradebook-student")
    await bp.goto(f"{server.base}/courses/{course_id}/gradebook")
    await (
        bp.locator("[data-table]")
        .get_by_role("row", name="Lab report 1")
        .get_by_text("6 / 10 (late)")
        .wait_for()
    )
    assert "Ada" not in await text_of(bp.locator("main"))

    # The teacher's course page shows the latest message in the overview.
    await tp.goto(f"{server.base}/courses/{course_id}")
    overview = tp.locator("[data-overview]")
    await overview.get_by_text("Ada Byron: Is the lab on Friday?").wait_for()

    # The teacher's gradebook: sortable, and the CSV it downloads is the server's.
    await tp.goto(f"{server.base}/courses/{course_id}/gradebook")
    grid = tp.locator("[data-table] table")
    await grid.get_by_role("row", name="Ada Byron").wait_for()
    await grid.get_by_role("button", name="Total (10)").click()
    first = grid.locator("tbody tr").first
    assert (await first.locator("th").inner_text()) == "Ben Osei"
    await check_page(tp, "gradebook-teacher")
    async with tp.expect_download() as dl:
        await tp.get_by_role("button", name="Download CSV").click()
    path = await (await dl.value).path()
    text = await asyncio.to_thread(Path(path).read_text, encoding="utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][-2:] == ["Lab report 1 (10)", "total (10)"]
    by_name = {r[1]: r[3:] for r in rows[1:]}
    assert by_name == {"Ada Byron": ["8.5", "8.5"], "Ben Osei": ["6", "6"]}
    for ctx_page in (tp, ap, bp):
        await ctx_page.context.close()


async def test_a_class_is_held_recorded_and_watched(server: Server, browser: Any) -> None:
    """Scheduled on the course page, started from its session page, recorded in the
    classroom (fake camera); afterwards the session page shows attendance for both and
    its recording plays, seekable, in the player page."""
    teacher = await server.user("Mr Lindqvist", role="teacher")
    cleo = await server.user("Cleo Park")
    course = await server.call(
        "POST",
        "/api/v1/courses",
        teacher,
        json={"code": "PHY-2", "title": "Physics", "enrollment_code": "phy-2-code"},
    )
    await server.call(
        "POST",
        f"/api/v1/courses/{course['id']}/enrollments",
        teacher,
        json={"email": cleo.email},
    )
    dora = await server.user("Dora Mensah")
    tp = await signed_in_page(
        browser, server, teacher, permissions=["clipboard-read", "clipboard-write"]
    )
    await tp.goto(f"{server.base}/courses/{course['id']}")

    # People: the code copied; enrol by e-mail (an unknown one is refused), change a
    # role, remove.
    await tp.get_by_role("button", name="Copy code").click()
    await tp.locator("[data-code-status]").get_by_text("Copied.").wait_for()
    assert await tp.evaluate("navigator.clipboard.readText()") == "phy-2-code"
    await tp.get_by_role("button", name="New code").click()
    await tp.locator("[data-code-status]").get_by_text("New code made").wait_for()
    new_code = await tp.locator("[data-code]").inner_text()
    assert new_code != "phy-2-code"
    stored = await server.call("GET", f"/api/v1/courses/{course['id']}", teacher)
    assert stored["enrollment_code"] == new_code
    enrol = tp.get_by_role("form", name="Enrol someone by e-mail")
    await enrol.get_by_label("E-mail").fill("nobody@school.example")
    await enrol.get_by_role("button", name="Enrol").click()
    await eventually(
        lambda: _has(enrol.get_by_role("alert"), "No active user matches"), 10, "refusal"
    )
    await enrol.get_by_label("E-mail").fill(dora.email)
    await enrol.get_by_label("Role").select_option("ta")
    await enrol.get_by_role("button", name="Enrol").click()
    role = tp.get_by_label("Role of Dora Mensah")
    await role.wait_for()
    assert await role.input_value() == "ta"
    await role.select_option("student")
    await tp.get_by_text("Dora Mensah is now Student.").wait_for()
    tp.once("dialog", lambda dialog: dialog.accept())
    await tp.get_by_role("button", name="Remove Dora Mensah from the course").click()
    await tp.get_by_text("Dora Mensah was removed.").wait_for()
    people = tp.locator("[data-people]")
    await people.get_by_text("Dora Mensah").first.wait_for(state="detached")
    enrolled = await server.call(
        "GET", f"/api/v1/courses/{course['id']}/enrollments?status=removed", teacher
    )
    assert [e["user_id"] for e in enrolled["items"]] == [dora.id]

    await tp.get_by_text("Schedule a session").click()
    await tp.get_by_label("Title", exact=True).last.fill("Pendulums")
    start = time.localtime(time.time() - 60)
    await tp.get_by_label("Starts").fill(time.strftime("%Y-%m-%dT%H:%M", start))
    await tp.get_by_role("button", name="Schedule", exact=True).click()
    await tp.locator("[data-sessions]").get_by_role("link", name="Pendulums").click()
    await tp.get_by_role("heading", name="Pendulums").wait_for()
    await check_page(tp, "session-scheduled")
    await tp.get_by_role("button", name="Start now").click()
    await tp.wait_for_url("**/classroom/*")
    session_id = tp.url.rsplit("/", 1)[1]
    await join_class(tp)

    cp = await signed_in_page(browser, server, cleo, viewport=PHONE)
    await cp.goto(f"{server.base}/sessions/{session_id}")
    await cp.get_by_role("link", name="Join").click()
    await join_class(cp)
    await eventually(lambda: decoding(cp, 1), 30, "Cleo decoding the teacher")
    await tp.get_by_role("button", name="Record").click()
    await tp.locator("[data-rec-badge]").filter(has_text="Recording").wait_for()
    await asyncio.sleep(3)  # three seconds of class on the recording
    await tp.get_by_role("button", name="Stop recording").click()
    await tp.get_by_role("button", name="End for all").click()
    await tp.get_by_role("button", name="End class").click()
    await cp.locator("[data-overlay]").wait_for(state="visible")

    # The session page: attendance for both, its CSV, and the recording once processed.
    await tp.goto(f"{server.base}/sessions/{session_id}")
    attendance = tp.locator("[data-attendance] table")
    await attendance.get_by_role("row", name="Cleo Park").wait_for()
    await attendance.get_by_role("row", name="Mr Lindqvist").wait_for()
    async with tp.expect_download() as dl:
        await tp.get_by_role("button", name="Download CSV").click()
    text = await asyncio.to_thread(Path(str(await (await dl.value).path())).read_text)
    names = {row["display_name"] for row in csv.DictReader(io.StringIO(text))}
    assert names == {"Cleo Park", "Mr Lindqvist"}
    watch = tp.get_by_role("link", name="Watch: Pendulums")

    async def ready() -> bool:
        if await watch.count():
            return True
        await tp.reload()
        await tp.get_by_role("heading", name="Pendulums").wait_for()
        return False

    await eventually(ready, 30, "the recording ready to watch", every=1)
    await check_page(tp, "session-ended")
    await watch.click()
    video = tp.locator("[data-video]")
    await eventually(
        lambda: video.evaluate("v => v.readyState >= 2 && v.duration > 1"), 15, "video loaded"
    )
    await video.evaluate("v => { v.muted = true; return v.play(); }")
    await eventually(lambda: video.evaluate("v => v.currentTime > 0.3"), 10, "playback advancing")
    await video.evaluate("v => { v.currentTime = v.duration / 2; }")  # seekable
    await eventually(lambda: video.evaluate("v => !v.seeking && v.readyState >= 2"), 10, "seeked")
    await check_page(tp, "recording-player")
    await cp.goto(f"{server.base}/courses/{course['id']}")
    await cp.get_by_role("link", name="Watch: Pendulums").wait_for()
    assert await cp.locator("[data-attendance]").count() == 0  # not on the course page
    # Archived, the course is read-only: no scheduling, no enrolling, no posting.
    await tp.goto(f"{server.base}/courses/{course['id']}")
    controls = [
        tp.get_by_text("Schedule a session"),
        tp.get_by_role("form", name="Enrol someone by e-mail"),
        tp.get_by_role("form", name="Write to the course"),
    ]
    for control in controls:
        await control.wait_for()
    tp.once("dialog", lambda dialog: dialog.accept())
    await tp.get_by_role("button", name="Archive course").click()
    await tp.locator("[data-overview]").get_by_text("Archived (read-only)").wait_for()
    for control in controls:
        assert await control.is_hidden(), control
    for page in (tp, cp):
        await page.context.close()


async def _has(locator: Any, text: str) -> bool:
    return await locator.count() > 0 and text in await locator.first.inner_text()
