"""Sign-in, registration and the dashboard in headless Chromium: the server's error
messages are shown, an expired session sends the user back to sign in with a clear
notice, tokens are refreshed silently, and the dashboard lists courses, live sessions
and what is coming up."""

from __future__ import annotations

import time
from typing import Any

import pytest
from classroom_kit import (
    ARTIFACTS,
    PASSWORD,
    Server,
    browser_fixture,  # noqa: F401  (module fixture)
    check_page,
    decoding,
    iso,
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


async def new_page(browser: Any) -> Any:
    ctx = await browser.new_context(viewport={"width": 390, "height": 844})  # a phone
    return await ctx.new_page()


async def test_signin_errors_are_the_servers(server: Server, browser: Any) -> None:
    known = await server.user("Carla Mendes")
    page = await new_page(browser)
    await page.goto(server.base + "/dashboard")
    # Not signed in: sent to the sign-in page.
    await page.wait_for_url("**/signin?next=%2Fdashboard")
    form = page.locator('[data-form="signin"]')
    await page.get_by_label("E-mail").first.fill(known.email)
    await page.get_by_label("Password").first.fill("not the password at all")
    await form.get_by_role("button", name="Sign in").click()
    error = form.get_by_role("alert")
    await error.wait_for()
    assert await error.inner_text() == "E-mail or password is wrong."
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "signin-phone.png"))
    # Empty field: said before anything is sent.
    await page.get_by_label("Password").first.fill("")
    await form.get_by_role("button", name="Sign in").click()
    await eventually(
        lambda: _has(error, "Please fill in “Password”"), 5, "the missing-field message"
    )

    # Registration errors: a weak password, an e-mail already taken.
    await page.get_by_role("tab", name="Create account").click()
    reg = page.locator('[data-form="register"]')
    await reg.get_by_label("Your name").fill("Dan Eze")
    await reg.get_by_label("E-mail").fill("dan@school.example")
    await reg.get_by_label("Password").fill("short")
    await reg.get_by_role("button", name="Create account").click()
    reg_error = reg.get_by_role("alert")
    await eventually(lambda: _has(reg_error, "assword"), 5, "the password policy message")
    await reg.get_by_label("E-mail").fill(known.email)
    await reg.get_by_label("Password").fill(PASSWORD)
    await reg.get_by_role("button", name="Create account").click()
    await eventually(
        lambda: _has(reg_error, "An account with this e-mail already exists."),
        5,
        "the e-mail-taken message",
    )

    # The right password: to the page asked for.
    await page.get_by_role("tab", name="Sign in").click()
    await page.get_by_label("E-mail").first.fill(known.email)
    await page.get_by_label("Password").first.fill(PASSWORD)
    await form.get_by_role("button", name="Sign in").click()
    await page.wait_for_url("**/dashboard")
    await page.get_by_role("heading", name="Hello, Carla Mendes").wait_for()


async def test_expired_session_is_shown_and_refresh_is_silent(
    server: Server,
    browser: Any,
) -> None:
    user = await server.user("Eli Novak")
    page = await signed_in_page(browser, server, user)
    # An access token about to expire is refreshed before it is used.
    await page.evaluate(
        """() => { const s = JSON.parse(localStorage.getItem("vtp.session"));
                   s.access_expires_at = Date.now() + 5000;
                   localStorage.setItem("vtp.session", JSON.stringify(s)); }"""
    )
    before = await page.evaluate('JSON.parse(localStorage.getItem("vtp.session"))')
    cookie_before = await _refresh_cookie(page)
    await page.goto(server.base + "/dashboard")
    await page.get_by_role("heading", name="Hello, Eli Novak").wait_for()
    after = await page.evaluate('JSON.parse(localStorage.getItem("vtp.session"))')
    assert after["access_token"] != before["access_token"]
    assert after["access_expires_at"] > time.time() * 1000 + 60_000
    # The refresh token was rotated in its HttpOnly cookie, out of the page's reach.
    cookie_after = await _refresh_cookie(page)
    assert cookie_after["value"] != cookie_before["value"]
    assert cookie_after["httpOnly"] and cookie_after["sameSite"] == "Strict"
    assert cookie_after["path"] == "/api/v1/auth/refresh"
    assert "refresh_token" not in after and await page.evaluate("document.cookie") == ""

    # Both tokens dead (revoked by a sign-out elsewhere): the session is over, and said so.
    await server.call("POST", "/api/v1/auth/logout", user)
    await page.evaluate(
        """() => { const s = JSON.parse(localStorage.getItem("vtp.session"));
                   s.access_token = "expired.token.value"; s.access_expires_at = Date.now() - 1;
                   localStorage.setItem("vtp.session", JSON.stringify(s)); }"""
    )
    await page.goto(server.base + "/dashboard")
    await page.wait_for_url("**/signin?expired=1**")
    notice = page.get_by_role("alert").filter(has_text="expired")
    await notice.wait_for()
    assert (
        await notice.inner_text() == "Your session has expired. Please sign in again to continue."
    )
    assert await page.evaluate('localStorage.getItem("vtp.session")') is None


async def test_dashboard_lists_courses_live_and_upcoming(
    server: Server,
    browser: Any,
) -> None:
    teacher = await server.user("Mr Haddad", role="teacher")
    student = await server.user("Fay Lin")
    live = await server.live_session(teacher, [student], title="Cells, live")
    tomorrow = time.time() + 86400
    mitosis = await server.call(
        "POST",
        f"/api/v1/courses/{live['course_id']}/sessions",
        teacher,
        json={
            "title": "Mitosis",
            "scheduled_start": iso(tomorrow),
            "scheduled_end": iso(tomorrow + 3600),
        },
    )
    page = await signed_in_page(browser, server, student, viewport={"width": 390, "height": 844})
    await page.goto(server.base + "/dashboard")
    live_list = page.locator("[data-live]")
    await eventually(lambda: _has(live_list, "Cells, live"), 10, "the live session listed")
    join = live_list.get_by_role("link", name="Join")
    assert await join.get_attribute("href") == f"/classroom/{live['id']}"
    assert "Biology 101" in await page.locator("[data-courses]").inner_text()
    assert "No recordings yet." in await page.locator("[data-recordings]").inner_text()
    upcoming = page.locator("[data-upcoming]")
    assert "Mitosis" in await upcoming.inner_text()
    assert await upcoming.get_by_role("button").count() == 0  # students cannot start it
    # The teacher can start it, and sees the course's enrolment code.
    teacher_page = await signed_in_page(
        browser, server, teacher, permissions=["clipboard-read", "clipboard-write"]
    )
    await teacher_page.goto(server.base + "/dashboard")
    upcoming_t = teacher_page.locator("[data-upcoming]")
    await upcoming_t.get_by_role("button", name="Start now").wait_for()
    courses = teacher_page.locator("[data-courses]")
    assert "Enrolment code" in await courses.inner_text()
    await courses.get_by_role("button", name="Copy the enrolment code of Biology 101").click()
    await courses.get_by_text("Copied.").wait_for()
    code = await courses.locator(".code").inner_text()
    assert await teacher_page.evaluate("navigator.clipboard.readText()") == code
    assert await teacher_page.locator("#enrol-code").is_hidden()  # the student's box
    # Each session's title leads to its page, each course's to the course page.
    link = upcoming_t.get_by_role("link", name="Mitosis")
    assert await link.get_attribute("href") == f"/sessions/{mitosis['id']}"
    assert await courses.get_by_role("link", name="Biology 101").get_attribute("href") == (
        f"/courses/{live['course_id']}"
    )
    await check_page(teacher_page, "dashboard-teacher")
    await teacher_page.context.close()
    # A phone-width screen: nothing wider than the viewport.
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, width
    await check_page(page, "dashboard-student")
    await join.click()
    await page.wait_for_url(f"**/classroom/{live['id']}")
    await page.get_by_role("heading", name="Cells, live").wait_for()
    join_class = page.get_by_role("button", name="Join class")
    await eventually(join_class.is_enabled, 15, "the Join button enabled")
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, width
    await page.screenshot(path=str(ARTIFACTS / "prejoin-phone.png"), full_page=True)
    # A class that has not started: said before joining, and the server's refusal shown.
    await page.goto(f"{server.base}/classroom/{mitosis['id']}")
    info = page.locator("[data-prejoin-info]")
    await eventually(lambda: _has(info, "This class has not started yet"), 10, "not started")
    join_class = page.get_by_role("button", name="Join class")
    await eventually(join_class.is_enabled, 15, "the Join button enabled")
    await join_class.click()
    error = page.locator("[data-join-error]")
    await error.wait_for()
    assert await error.inner_text() == "The session is scheduled, not live."


async def test_removed_student_asks_to_rejoin_and_the_teacher_decides(
    server: Server, browser: Any
) -> None:
    teacher = await server.user("Ms Okoro", role="teacher")
    student = await server.user("Gil Moss")
    live = await server.live_session(teacher, [student], title="Optics")
    course = await server.call("GET", f"/api/v1/courses/{live['course_id']}", teacher)
    await server.call("DELETE", f"/api/v1/courses/{course['id']}/enrollments/{student.id}", teacher)
    # The old code does not bring him back: his page says the teacher decides.
    page = await signed_in_page(browser, server, student)
    await page.goto(server.base + "/dashboard")
    await page.get_by_label("Enrolment code").fill(course["enrollment_code"])
    await page.get_by_role("button", name="Join course").click()
    notice = page.locator("[data-notice]")
    await eventually(lambda: _has(notice, "waiting for the teacher"), 10, "the waiting notice")
    assert "Biology 101" not in await page.locator("[data-courses]").inner_text()
    # The teacher sees the request on the dashboard and approves it.
    teacher_page = await signed_in_page(browser, server, teacher)
    await teacher_page.goto(server.base + "/dashboard")
    approve = teacher_page.get_by_role("button", name="Approve Gil Moss")
    await approve.wait_for(timeout=10000)
    await approve.click()
    await approve.wait_for(state="detached", timeout=10000)
    await page.reload()
    courses = page.locator("[data-courses]")
    await eventually(lambda: _has(courses, "Biology 101"), 10, "the course back on his list")
    await teacher_page.context.close()
    await page.context.close()


async def _refresh_cookie(page: Any) -> dict[str, Any]:
    cookies = [c for c in await page.context.cookies() if c["name"] == "vtp_refresh"]
    assert len(cookies) == 1, cookies
    cookie: dict[str, Any] = cookies[0]
    return cookie


async def test_sign_in_keeps_the_refresh_token_in_a_cookie_and_never_leaves_the_site(
    server: Server, browser: Any
) -> None:
    user = await server.user("Hana Sato")
    page = await new_page(browser)
    for evil in (
        "/%5Cevil.example/",
        "/%09/evil.example/",
        "//evil.example/",
        "https://evil.example/",
    ):
        await page.goto(f"{server.base}/signin?next={evil}")
        await page.get_by_label("E-mail").first.fill(user.email)
        await page.get_by_label("Password").first.fill(PASSWORD)
        await page.locator('[data-form="signin"]').get_by_role("button", name="Sign in").click()
        await page.wait_for_url(server.base + "/dashboard")
        await page.get_by_role("heading", name="Hello, Hana Sato").wait_for()
        stored = await page.evaluate('localStorage.getItem("vtp.session")')
        assert "refresh_token" not in stored and await page.evaluate("document.cookie") == ""
        assert (await _refresh_cookie(page))["httpOnly"]
        await page.get_by_role("button", name="Sign out").click()
        await page.wait_for_url("**/signin")
        assert [c for c in await page.context.cookies() if c["name"] == "vtp_refresh"] == []
    # A same-site path is still honoured, query included.
    await page.goto(f"{server.base}/signin?next=%2Fdashboard%3Fx%3D1")
    await page.get_by_label("E-mail").first.fill(user.email)
    await page.get_by_label("Password").first.fill(PASSWORD)
    await page.locator('[data-form="signin"]').get_by_role("button", name="Sign in").click()
    await page.wait_for_url(server.base + "/dashboard?x=1")


async def _has(locator: Any, text: str) -> bool:
    return text in await locator.inner_text()


FOCUSED = """() => { const e = document.activeElement;
    return e.getAttribute("aria-label") || (e.labels && e.labels[0] && e.labels[0].textContent)
        || e.textContent.trim(); }"""


async def test_keyboard_only_sign_in_in_a_sensible_order(server: Server, browser: Any) -> None:
    user = await server.user("Gus Ferreira")
    page = await new_page(browser)
    await page.goto(server.base + "/signin")
    order = []
    for _ in range(6):
        await page.keyboard.press("Tab")
        order.append(await page.evaluate(FOCUSED))
    assert order == [
        "Skip to content",
        "VTP Classroom, home",
        "Sign in",  # the tab
        "E-mail",
        "Password",
        "Sign in",  # the button
    ], order
    # Arrow keys move between the tabs; the register form follows its tab.
    await page.keyboard.press("Shift+Tab")
    await page.keyboard.press("Shift+Tab")
    await page.keyboard.press("Shift+Tab")
    await page.keyboard.press("ArrowRight")
    assert await page.evaluate(FOCUSED) == "Create account"
    assert await page.locator('[data-form="register"]').is_visible()
    await page.keyboard.press("ArrowLeft")
    await page.keyboard.press("Tab")
    await page.keyboard.type(user.email)
    await page.keyboard.press("Tab")
    await page.keyboard.type(PASSWORD)
    await page.keyboard.press("Enter")
    await page.wait_for_url("**/dashboard")
    await page.get_by_role("heading", name="Hello, Gus Ferreira").wait_for()


async def test_a_class_from_scratch_through_the_ui(server: Server, browser: Any) -> None:
    """The README's two-window walk-through: a teacher creates a course and starts a class,
    a new student registers, enrols with the code and joins; each decodes the other."""
    teacher_user = await server.user("Ms Ito", role="teacher")
    teacher = await (await browser.new_context(viewport={"width": 1280, "height": 800})).new_page()
    await teacher.goto(server.base + "/")
    await teacher.wait_for_url("**/signin?next=%2Fdashboard")
    await teacher.get_by_label("E-mail").first.fill(teacher_user.email)
    await teacher.get_by_label("Password").first.fill(PASSWORD)
    await teacher.keyboard.press("Enter")
    await teacher.get_by_role("heading", name="Hello, Ms Ito").wait_for()
    await teacher.get_by_text("New course").click()
    await teacher.get_by_label("Course code").fill("CHEM-2")
    await teacher.get_by_label("Course title").fill("Chemistry")
    await teacher.get_by_role("button", name="Create course").click()
    code_line = teacher.locator("[data-courses] .course").filter(has_text="Chemistry")
    await code_line.get_by_text("Enrolment code:").wait_for()
    code = (await code_line.get_by_text("Enrolment code:").inner_text()).split(": ")[1]
    await code_line.get_by_role("button", name="Start a class now").click()
    await teacher.wait_for_url("**/classroom/**")
    await join_class(teacher)

    student = await (await browser.new_context(viewport={"width": 1280, "height": 800})).new_page()
    await student.goto(server.base + "/signin?register=1")
    form = student.locator('[data-form="register"]')
    await form.get_by_label("Your name").fill("Hana Sato")
    await form.get_by_label("E-mail").fill(f"hana-{time.time_ns()}@school.example")
    await form.get_by_label("Password").fill(PASSWORD)
    await form.get_by_role("button", name="Create account").click()
    await student.get_by_role("heading", name="Hello, Hana Sato").wait_for()
    await student.get_by_label("Enrolment code").fill(code)
    await student.get_by_role("button", name="Join course").click()
    await student.get_by_text("You joined Chemistry.").wait_for()
    await student.locator("[data-live]").get_by_role("link", name="Join").click()
    await join_class(student)
    for page in (teacher, student):
        await eventually(lambda p=page: decoding(p, 1), 30, "each decoding the other")
    await teacher.context.close()
    await student.context.close()


async def test_change_password_and_reset_link_pages(server: Server, browser: Any) -> None:
    user = await server.user("Ivo Petrov")
    admin = await server.user("Ada Admin", role="admin")
    page = await signed_in_page(browser, server, user)
    await page.goto(server.base + "/dashboard")
    await page.get_by_role("link", name="Ivo Petrov").click()  # the name leads to the account
    await page.wait_for_url("**/account")
    await page.get_by_text(f"Signed in as Ivo Petrov ({user.email}).").wait_for()
    form = page.locator('[data-form="password"]')
    await form.get_by_label("Current password").fill("not my password")
    await form.get_by_label("New password", exact=True).fill("a fresh passphrase")
    await form.get_by_label("New password again").fill("a fresh passphrase")
    await form.get_by_role("button", name="Change password").click()
    error = form.get_by_role("alert")
    await eventually(lambda: _has(error, "The current password is wrong."), 5, "wrong password")
    await form.get_by_label("Current password").fill(PASSWORD)
    await form.get_by_role("button", name="Change password").click()
    await page.get_by_text("Your password has been changed.").wait_for()
    # The page's own session goes on (fresh tokens, rotated cookie); the old tokens are dead.
    await page.goto(server.base + "/dashboard")
    await page.get_by_role("heading", name="Hello, Ivo Petrov").wait_for()
    old = await server.http.get(
        server.base + "/api/v1/users/me",
        headers={"Authorization": f"Bearer {user.tokens['access_token']}"},
    )
    assert old.status == 401

    # An admin's one-time link: the reset page sets a new password, once.
    link = await server.call("POST", f"/api/v1/users/{user.id}/password-reset", admin)
    visitor = await new_page(browser)
    await visitor.goto(link["reset_url"])
    reset = visitor.locator('[data-form="reset"]')
    await reset.get_by_label("New password", exact=True).fill("the third passphrase")
    await reset.get_by_label("New password again").fill("the third passphrase")
    await reset.get_by_role("button", name="Set the new password").click()
    await visitor.get_by_text("Your password has been changed. You can now sign in").wait_for()
    assert "token" not in visitor.url
    await visitor.goto("about:blank")  # (a fragment change alone would not reload the page)
    await visitor.goto(link["reset_url"])
    await (
        visitor.locator('[data-form="reset"]')
        .get_by_label("New password", exact=True)
        .fill("a fourth passphrase")
    )
    await visitor.get_by_label("New password again").fill("a fourth passphrase")
    await visitor.get_by_role("button", name="Set the new password").click()
    await eventually(
        lambda: _has(visitor.locator('[data-form="reset"] [data-error]'), "not valid"),
        5,
        "a used link refused",
    )
    # Without a token the page offers the e-mail form, and says when there is no e-mail.
    await visitor.goto(server.base + "/reset-password")
    request = visitor.locator('[data-form="request"]')
    await request.get_by_label("E-mail").fill(user.email)
    await request.get_by_role("button", name="Send the link").click()
    await eventually(
        lambda: _has(request.get_by_role("alert"), "ask an administrator"), 5, "no e-mail here"
    )
    await visitor.goto(server.base + "/signin")
    await visitor.get_by_label("E-mail").first.fill(user.email)
    await visitor.get_by_label("Password").first.fill("the third passphrase")
    await visitor.locator('[data-form="signin"]').get_by_role("button", name="Sign in").click()
    await visitor.wait_for_url("**/dashboard")
