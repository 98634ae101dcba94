// Grades of one course. Staff: students × assignments with totals, sortable by any column,
// and the CSV. A student: their own released (returned) grades only.
import { api, describeError, el, requireUser } from "./api.js";
import { showDate } from "./dates.js";
import { downloadFile } from "./files.js";

/** @type {(sel: string) => any} (an element of whatever kind the selector names) */
const $ = (sel) => document.querySelector(sel);
const courseId = $("[data-course-id]").dataset.courseId;
const notice = $("[data-notice]");

function showError(error) {
  notice.textContent = describeError(error);
  notice.hidden = false;
}

const cellText = (entry) => (entry ? `${entry.score}${entry.is_late ? " (late)" : ""}${entry.status === "graded" ? " *" : ""}` : "—");

function staffTable(book) {
  let sortKey = "name";
  let ascending = true;
  const table = el("table", { class: "grid" });
  const caption = el("caption", { class: "small muted", text: "Students × assignments. * graded, not returned yet." });
  const value = (row, key) => {
    if (key === "name") return row.display_name.toLowerCase();
    if (key === "total") return row.total;
    const entry = row.grades[key];
    return entry ? entry.score : -1;
  };
  const columns = [["name", "Student"], ...book.assignments.map((a) => [a.id, `${a.title} (${a.points_possible})`]), ["total", `Total (${book.points_possible_total})`]];
  const render = () => {
    const rows = [...book.students].sort((a, b) => {
      const x = value(a, sortKey);
      const y = value(b, sortKey);
      return (x < y ? -1 : x > y ? 1 : 0) * (ascending ? 1 : -1);
    });
    const head = el(
      "tr",
      {},
      ...columns.map(([key, label]) =>
        el(
          "th",
          { scope: "col", "aria-sort": key === sortKey ? (ascending ? "ascending" : "descending") : "none" },
          el("button", {
            type: "button",
            class: "sort",
            text: label + (key === sortKey ? (ascending ? " ▲" : " ▼") : ""),
            onclick: () => {
              ascending = key === sortKey ? !ascending : true;
              sortKey = key;
              render();
              table.querySelector(`th[aria-sort]:not([aria-sort="none"]) button`).focus();
            },
          }),
        ),
      ),
    );
    const body = rows.map((row) =>
      el(
        "tr",
        {},
        el("th", { scope: "row", text: row.display_name }),
        ...book.assignments.map((a) => el("td", { text: cellText(row.grades[a.id]) })),
        el("td", { class: "total", text: String(row.total) }),
      ),
    );
    table.replaceChildren(caption, el("thead", {}, head), el("tbody", {}, ...body));
  };
  render();
  return book.students.length ? table : el("p", { class: "muted", text: "No students enrolled yet." });
}

function myTable(mine) {
  const rows = mine.assignments.map((a) => {
    const entry = mine.grades[a.id];
    return el(
      "tr",
      {},
      el("th", { scope: "row" }, el("a", { href: `/assignments/${a.id}`, text: a.title })),
      el("td", { text: showDate(a.due_at, "—") }),
      el("td", { text: entry ? `${entry.score} / ${a.points_possible}${entry.is_late ? " (late)" : ""}` : "not returned yet" }),
    );
  });
  return el(
    "table",
    { class: "grid" },
    el("caption", { class: "small muted", text: "Only grades your teacher has returned are shown." }),
    el("thead", {}, el("tr", {}, el("th", { scope: "col", text: "Assignment" }), el("th", { scope: "col", text: "Due" }), el("th", { scope: "col", text: "Grade" }))),
    el("tbody", {}, ...rows, el("tr", { class: "total" }, el("th", { scope: "row", text: "Total" }), el("td"), el("td", { text: `${mine.total} / ${mine.points_possible_total}` }))),
  );
}

async function load() {
  await requireUser();
  const holder = $("[data-table]");
  let course;
  try {
    course = await api(`/api/v1/courses/${courseId}`);
  } catch (e) {
    holder.replaceChildren();
    showError(e);
    return;
  }
  document.title = `Grades · ${course.title} · VTP Classroom`;
  $("[data-title]").textContent = `Grades: ${course.title}`;
  $("[data-course-link]").textContent = course.title;
  const staff = course.my_role === "teacher" || course.my_role === "ta" || course.my_role === null;
  try {
    if (staff) {
      const book = await api(`/api/v1/courses/${courseId}/gradebook`);
      $("[data-sub]").textContent = `${book.students.length} student(s), ${book.assignments.length} assignment(s)`;
      holder.replaceChildren(staffTable(book));
      const csv = $("[data-csv]");
      csv.hidden = false;
      csv.onclick = () => downloadFile(`/api/v1/courses/${courseId}/gradebook.csv`, `grades-${course.code}.csv`).catch(showError);
    } else {
      const mine = await api(`/api/v1/courses/${courseId}/grades/me`);
      $("[data-sub]").textContent = "Your grades";
      holder.replaceChildren(myTable(mine));
    }
  } catch (e) {
    holder.replaceChildren();
    showError(e);
  }
}

load().catch(showError);
