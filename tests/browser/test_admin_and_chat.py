"""The admin's users page, the account's display name, chat that stays current (course
page, session page) and editing or cancelling a scheduled session, in headless Chromium
against the real server; axe-core and screenshots at desktop and phone width."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime
from typing import Any

import asyncpg
import pytest
from classroom_kit import (
    PASSWORD,
    PHONE,
    Server,
    browser_fixture,  # noqa: F401  (module fixture)
    check_page,
    iso,
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

POLL_S = 4  # chat_feed.js POLL_MS


async def _has(locator: Any, text: str) -> bool:
    return await locator.count() > 0 and text in await locator.first.inner_text()


async def status_of(server: Server, method: str, path: str, **kw: Any) -> int:
    async with server.http.request(method, server.base + path, **kw) as resp:
        return resp.status


async def test_admin_finds_promotes_disables_and_resets(server: Server, browser: Any) -> None:
    admin = await server.user("Grace Admin", role="admin")
    kim = await server.user("Kim Novak")
    lee = await server.user("Lee Mwangi")
    await server.user("Lena Ruiz")
    sam = await server.user("Sam Student")
    page = await signed_in_page(
        browser, server, admin, permissions=["clipboard-read", "clipboard-write"]
    )
    await page.goto(server.base + "/account")
    await page.get_by_role("link", name="Manage users").click()
    await page.wait_for_url("**/admin/users")
    await page.goto(server.base + "/dashboard")
    await page.get_by_role("link", name="Users", exact=True).click()  # in the top bar
    await page.wait_for_url("**/admin/users")
    users = page.get_by_role("list", name="Accounts")
    await users.get_by_text("Kim Novak", exact=True).wait_for()
    assert await page.get_by_label("Site role of Grace Admin").is_disabled()  # not oneself

    # Search narrows as one types (the server searches; any case).
    await page.get_by_label("Search", exact=True).fill("MWANG")
    await eventually(lambda: _count(users, 1), 10, "one account matching 'mwang'")
    assert await users.get_by_text("Kim Novak", exact=True).count() == 0
    await page.get_by_label("Search", exact=True).fill(lee.email.split("@")[0])
    await eventually(lambda: _has(users.locator("li").first, "Lee Mwangi"), 10, "by address")
    await page.get_by_label("Search", exact=True).fill("nobody at all")
    await users.get_by_text("No account matches.").wait_for()
    await page.get_by_label("Search", exact=True).fill("")
    await users.get_by_text("Kim Novak", exact=True).wait_for()

    # A site role changes; Kim's old token stops working (it carried the old role).
    # Declined, nothing changes; accepted, the role changes.
    page.once("dialog", lambda dialog: dialog.dismiss())
    await page.get_by_label("Site role of Kim Novak").select_option("admin")
    await eventually(
        lambda: _value_is(page.get_by_label("Site role of Kim Novak"), "student"), 5, "reverted"
    )
    found = await server.call("GET", f"/api/v1/users?q={kim.email}", admin)
    assert found["items"][0]["role"] == "student"
    page.once("dialog", lambda dialog: dialog.accept())
    await page.get_by_label("Site role of Kim Novak").select_option("teacher")
    await page.get_by_text("Kim Novak is now Teacher;", exact=False).wait_for()
    assert (await server.call("GET", f"/api/v1/users?q={kim.email}", admin))["items"][0][
        "role"
    ] == "teacher"
    me = "/api/v1/users/me"
    bearer = {"Authorization": f"Bearer {kim.tokens['access_token']}"}
    assert await status_of(server, "GET", me, headers=bearer) == 401
    await page.get_by_label("Site role", exact=True).select_option("teacher")  # the filter
    await eventually(lambda: _count(users, 1), 10, "only Kim is a teacher")
    await page.get_by_label("Site role", exact=True).select_option("")

    # Lee is disabled (after a confirmation): no sign-in; then enabled again.
    page.once("dialog", lambda dialog: dialog.accept())
    await page.get_by_role("button", name="Disable Lee Mwangi").click()
    await page.get_by_text("Lee Mwangi was disabled.").wait_for()
    row = users.locator("li", has_text="Lee Mwangi")
    await row.get_by_text("Disabled", exact=True).wait_for()
    login = {"email": lee.email, "password": PASSWORD}
    assert await status_of(server, "POST", "/api/v1/auth/login", json=login) == 401
    await page.get_by_label("Status", exact=True).select_option("false")
    await eventually(lambda: _count(users, 1), 10, "only Lee is disabled")
    await check_page(page, "admin-users")
    await page.get_by_label("Status", exact=True).select_option("")
    assert await row.get_by_role("button", name="Password-reset link for Lee Mwangi").is_disabled()
    await row.get_by_role("button", name="Enable Lee Mwangi").click()
    await page.get_by_text("Lee Mwangi was enabled.").wait_for()
    # The focus stays on the control that was used (keyboard users keep their place).
    assert await page.evaluate("document.activeElement.textContent") == "Disable"
    assert await status_of(server, "POST", "/api/v1/auth/login", json=login) == 200

    # A one-time reset link, shown with a copy button.
    await row.get_by_role("button", name="Password-reset link for Lee Mwangi").click()
    link = row.get_by_label("One-time link for Lee Mwangi", exact=False)
    await link.wait_for()
    url = await link.input_value()
    assert url.startswith(server.base + "/reset-password#token=")
    await row.get_by_role("button", name="Copy the reset link for Lee Mwangi").click()
    assert await page.evaluate("navigator.clipboard.readText()") == url
    await check_page(page, "admin-users-reset-link")

    # Fifty more accounts: the list comes fifty at a time, the rest on "Show more".
    conn = await asyncpg.connect(server.database_url)
    try:
        await conn.executemany(
            "INSERT INTO users (email, display_name, password_hash) VALUES ($1, $2, 'x')",
            [(f"pupil{i}@school.example", f"Pupil {i:02d}") for i in range(50)],
        )
    finally:
        await conn.close()
    await page.reload()
    await page.get_by_text("50+ accounts shown.").wait_for()
    first = await server.call("GET", "/api/v1/users?limit=100", admin)
    total = len(first["items"])
    assert 50 < total < 100 and first["next_cursor"] is None
    await page.get_by_role("button", name="Show more").click()
    await page.get_by_text(f"{total} accounts shown.").wait_for()
    assert await page.get_by_role("button", name="Show more").is_hidden()
    assert await users.locator("li[data-user-id]").count() == total
    shown = await users.locator("li[data-user-id]").evaluate_all(
        "items => items.map(li => li.dataset.userId)"
    )
    assert sorted(shown) == sorted(u["id"] for u in first["items"])  # none twice, none left

    # A student who opens the page is told it is for administrators; no list is fetched.
    student = await signed_in_page(browser, server, sam, viewport=PHONE)
    await student.goto(server.base + "/admin/users")
    await student.get_by_text("Only administrators can manage users.").wait_for()
    assert await student.get_by_role("list", name="Accounts").is_hidden()
    assert await student.get_by_role("link", name="Users", exact=True).is_hidden()
    for p in (page, student):
        await p.context.close()


async def _value_is(locator: Any, value: str) -> bool:
    return bool(await locator.input_value() == value)


async def _count(locator: Any, n: int) -> bool:
    return bool(await locator.locator("li[data-user-id]").count() == n)


async def test_account_display_name(server: Server, browser: Any) -> None:
    user = await server.user("Mo Salah")
    page = await signed_in_page(browser, server, user, viewport=PHONE)
    await page.goto(server.base + "/account")
    name = page.get_by_label("Display name")
    await eventually(lambda: _value_is(name, "Mo Salah"), 10, "the name filled in")
    assert await page.get_by_role("link", name="Manage users").is_hidden()  # not an admin
    await name.fill("   ")
    await page.get_by_role("button", name="Save name").click()
    await page.get_by_text("Please fill in your display name.").wait_for()
    await name.fill("x" * 130)  # maxlength keeps it to 120 characters
    assert len(await name.input_value()) == 120
    await name.fill("Mohamed Salah")
    await page.get_by_role("button", name="Save name").click()
    await page.get_by_text("Your name is now Mohamed Salah.").wait_for()
    await page.get_by_role("link", name="Mohamed Salah").wait_for()  # the top bar too
    assert (await server.call("GET", "/api/v1/users/me", user))["display_name"] == "Mohamed Salah"
    await check_page(page, "account")
    await page.context.close()


async def test_course_chat_arrives_without_reload(server: Server, browser: Any) -> None:
    """Messages from others appear on an open course page; edits and a moderator's delete
    follow; a hidden tab does not poll and catches up when shown again."""
    teacher = await server.user("Ms Adeyemi", role="teacher")
    ola = await server.user("Ola Berg")
    course = await server.call(
        "POST", "/api/v1/courses", teacher, json={"code": "ART-1", "title": "Art"}
    )
    await server.call(
        "POST", f"/api/v1/courses/{course['id']}/enrollments", teacher, json={"email": ola.email}
    )
    await server.call("POST", "/api/v1/courses", teacher, json={"code": "MUS-1", "title": "Music"})
    chat = f"/api/v1/courses/{course['id']}/chat"
    # Forty earlier messages (written in SQL: the API's chat allowance would refuse them
    # at this pace); the page shows the newest thirty and offers the rest.
    conn = await asyncpg.connect(server.database_url)
    try:
        await conn.executemany(
            """INSERT INTO chats (course_id, author_id, body, created_at)
               VALUES ($1, $2, $3, now() - make_interval(mins => $4))""",
            [
                (uuid.UUID(course["id"]), uuid.UUID(teacher.id), f"Note {i}", 60 - i)
                for i in range(40)
            ],
        )
    finally:
        await conn.close()
    tp = await signed_in_page(browser, server, teacher)
    op = await signed_in_page(browser, server, ola, viewport=PHONE)
    for p in (tp, op):
        await p.goto(f"{server.base}/courses/{course['id']}#chat")
        await p.locator("[data-course-chat]").get_by_text("Note 39").wait_for()
    # The teacher renames the course (a refused code is said by the form, which keeps it).
    await tp.get_by_text("Edit course").click()
    edit = tp.get_by_role("form", name="Edit course")
    await edit.get_by_label("Course title").fill("Art and design")
    code = edit.get_by_label("Course code")
    await code.fill("ART 1!")  # the browser holds it back
    assert await code.evaluate("input => input.validity.patternMismatch")
    await code.fill("MUS-1")  # another course's: the server refuses
    await edit.get_by_role("button", name="Save course").click()
    await eventually(
        lambda: _has(edit.get_by_role("alert"), "Another course has this code"), 10, "409"
    )
    assert await edit.get_by_label("Course title").input_value() == "Art and design"
    await check_page(tp, "course-edit")
    await edit.get_by_label("Course code").fill("ART-1")
    await edit.get_by_label("Description").fill("Drawing and painting, term 1")
    await edit.get_by_role("button", name="Save course").click()
    await tp.get_by_role("heading", name="Art and design").wait_for()
    stored = await server.call("GET", f"/api/v1/courses/{course['id']}", teacher)
    assert (stored["title"], stored["description"]) == (
        "Art and design",
        "Drawing and painting, term 1",
    )
    assert await op.locator("[data-course-edit]").is_hidden()  # not for students

    log = tp.locator("[data-course-chat]")
    assert await log.get_by_text("Note 5", exact=True).count() == 0
    await tp.get_by_role("button", name="Show earlier messages").click()
    await log.get_by_text("Note 0", exact=True).wait_for()
    assert await tp.get_by_role("button", name="Show earlier messages").is_hidden()
    assert await log.locator("li").count() == 40

    # Ola writes; the teacher's page shows it without a reload, after the older ones.
    await op.get_by_label("Message to the course").fill("Can I use charcoal?")
    await op.get_by_role("button", name="Send").click()
    await log.get_by_text("Can I use charcoal?").wait_for(timeout=(POLL_S + 4) * 1000)
    assert "Can I use charcoal?" in await log.locator("li").last.inner_text()
    overview = tp.locator("[data-overview]")
    await overview.get_by_text("Ola Berg: Can I use charcoal?").wait_for()  # follows too
    # The teacher answers and edits the answer; Ola sees both without a reload.
    await tp.get_by_label("Message to the course").fill("Yes, on paper")
    await tp.get_by_role("button", name="Send").click()
    ola_log = op.locator("[data-course-chat]")
    await ola_log.get_by_text("Yes, on paper").wait_for(timeout=(POLL_S + 4) * 1000)
    await log.get_by_role("button", name="Edit your message: Yes, on paper").click()
    await log.get_by_label("Your message", exact=True).fill("Yes, on A3 paper")
    await log.get_by_role("button", name="Save", exact=True).click()
    await log.get_by_text("Yes, on A3 paper").wait_for()
    await ola_log.get_by_text("Yes, on A3 paper").wait_for(timeout=(POLL_S + 4) * 1000)
    await ola_log.locator("li", has_text="Yes, on A3 paper").get_by_text("edited").wait_for()
    # A student cannot edit the teacher's message; the teacher may delete the student's.
    assert await ola_log.get_by_role("button", name="Edit your message: Yes, on A3").count() == 0
    tp.once("dialog", lambda dialog: dialog.accept())
    await log.get_by_role("button", name="Delete Ola Berg's message: Can I use charcoal?").click()
    await ola_log.get_by_text("(deleted)").wait_for(timeout=(POLL_S + 4) * 1000)
    await check_page(op, "course-chat-student")

    # A hidden tab asks nothing; shown again, it catches up at once.
    asked: list[str] = []
    op.on("request", lambda r: asked.append(r.url) if "/chat" in r.url else None)
    await op.evaluate(
        """() => { Object.defineProperty(document, "visibilityState",
                   { value: "hidden", configurable: true });
                   document.dispatchEvent(new Event("visibilitychange")); }"""
    )
    asked.clear()
    await server.call("POST", chat, teacher, json={"body": "While you were away"})
    await asyncio.sleep(2.5 * POLL_S)  # an absence: nothing to poll for
    assert asked == []
    assert await ola_log.get_by_text("While you were away").count() == 0
    await op.evaluate(
        """() => { delete document.visibilityState;
                   document.dispatchEvent(new Event("visibilitychange")); }"""
    )
    await ola_log.get_by_text("While you were away").wait_for(timeout=3000)
    for p in (tp, op):
        await p.context.close()


async def test_session_edit_cancel_and_chat(server: Server, browser: Any) -> None:
    teacher = await server.user("Mr Haddad", role="teacher")
    pia = await server.user("Pia Lund")
    course = await server.call(
        "POST", "/api/v1/courses", teacher, json={"code": "GEO-1", "title": "Geography"}
    )
    await server.call(
        "POST", f"/api/v1/courses/{course['id']}/enrollments", teacher, json={"email": pia.email}
    )
    sessions = f"/api/v1/courses/{course['id']}/sessions"
    now = time.time()
    rivers = await server.call(
        "POST",
        sessions,
        teacher,
        json={
            "title": "Rivers",
            "scheduled_start": iso(now + 86400),
            "scheduled_end": iso(now + 90000),
        },
    )
    deltas = await server.call(
        "POST",
        sessions,
        teacher,
        json={
            "title": "Deltas",
            "scheduled_start": iso(now + 2 * 86400),
            "scheduled_end": iso(now + 2 * 86400 + 3600),
        },
    )
    tp = await signed_in_page(browser, server, teacher, timezone_id="Europe/Berlin")

    # Edit: an end before the start is refused by the form, which keeps what was typed.
    await tp.goto(f"{server.base}/sessions/{rivers['id']}")
    await tp.get_by_role("heading", name="Rivers").wait_for()
    await tp.get_by_text("Chat opens when the session starts", exact=False).wait_for()
    await tp.get_by_text("Edit session").click()
    form = tp.get_by_role("form", name="Edit session")
    await form.get_by_label("Title").fill("Rivers and lakes")
    await form.get_by_label("Starts").fill("2031-05-06T10:00")
    await form.get_by_label("Ends").fill("2031-05-06T09:00")
    await form.get_by_role("button", name="Save changes").click()
    await eventually(lambda: _has(form.get_by_role("alert"), "must end after"), 10, "refusal")
    assert await tp.evaluate("document.activeElement.id") == "edit-end"
    assert await form.get_by_label("Title").input_value() == "Rivers and lakes"
    await form.get_by_label("Ends").fill("2031-05-06T11:30")
    await form.get_by_label("Record automatically").check()
    await check_page(tp, "session-edit")
    await form.get_by_role("button", name="Save changes").click()
    await tp.get_by_text("Session saved.").wait_for()
    await tp.get_by_role("heading", name="Rivers and lakes").wait_for()
    stored = await server.call("GET", f"/api/v1/sessions/{rivers['id']}", teacher)
    assert stored["title"] == "Rivers and lakes" and stored["auto_record"] is True
    start = datetime.fromisoformat(stored["scheduled_start"])
    assert start.timestamp() == datetime.fromisoformat("2031-05-06T08:00:00+00:00").timestamp()

    # The server's refusal is said by the form, which keeps what was typed: here the
    # session went live (from another tab) while the teacher was editing it.
    estuaries = await server.call(
        "POST",
        sessions,
        teacher,
        json={
            "title": "Estuaries",
            "scheduled_start": iso(now + 3 * 86400),
            "scheduled_end": iso(now + 3 * 86400 + 3600),
        },
    )
    await tp.goto(f"{server.base}/sessions/{estuaries['id']}")
    await tp.get_by_role("heading", name="Estuaries").wait_for()
    await tp.get_by_text("Edit session").click()
    await form.get_by_label("Title").fill("Estuaries and tides")
    await server.call("POST", f"/api/v1/sessions/{estuaries['id']}/start", teacher)
    await form.get_by_role("button", name="Save changes").click()
    await eventually(
        lambda: _has(form.get_by_role("alert"), "live session cannot be edited"), 10, "409"
    )
    assert await form.get_by_label("Title").input_value() == "Estuaries and tides"
    await server.call("POST", f"/api/v1/sessions/{estuaries['id']}/end", teacher)

    # Cancel (after a confirmation): no more start, edit or cancel.
    await tp.goto(f"{server.base}/sessions/{deltas['id']}")
    await tp.get_by_role("heading", name="Deltas").wait_for()
    tp.once("dialog", lambda dialog: dialog.accept())
    await tp.get_by_role("button", name="Cancel session").click()
    await tp.get_by_text("Deltas was cancelled.").wait_for()
    assert "Cancelled" in await tp.locator("[data-sub]").inner_text()
    for control in ("Start now", "Cancel session"):
        assert await tp.get_by_role("button", name=control).count() == 0
    assert await tp.get_by_text("Edit session").is_hidden()

    # Live: the session page's chat takes messages from both, without reloads.
    await server.call("POST", f"/api/v1/sessions/{rivers['id']}/start", teacher)
    await tp.goto(f"{server.base}/sessions/{rivers['id']}")
    pp = await signed_in_page(browser, server, pia, viewport=PHONE)
    await pp.goto(f"{server.base}/sessions/{rivers['id']}")
    await pp.get_by_label("Message to the session").fill("Which river is longest?")
    await pp.get_by_role("button", name="Send").click()
    teacher_log = tp.locator("[data-chat]")
    await teacher_log.get_by_text("Which river is longest?").wait_for(timeout=(POLL_S + 4) * 1000)
    # What is said in the classroom's chat (the same API) shows here too.
    await server.call(
        "POST", f"/api/v1/sessions/{rivers['id']}/chat", teacher, json={"body": "The Nile"}
    )
    await pp.locator("[data-chat]").get_by_text("The Nile").wait_for(timeout=(POLL_S + 4) * 1000)
    # While live only the publishing switch is editable.
    await tp.get_by_text("Edit session").click()
    assert await tp.get_by_role("form", name="Edit session").get_by_label("Title").is_hidden()
    await check_page(pp, "session-live-chat")
    await server.call("POST", f"/api/v1/sessions/{rivers['id']}/end", teacher)
    await pp.reload()
    await pp.get_by_text("its chat is kept here, read-only", exact=False).wait_for()
    await pp.locator("[data-chat]").get_by_text("The Nile").wait_for()
    assert await pp.get_by_label("Message to the session").is_hidden()
    for p in (tp, pp):
        await p.context.close()
