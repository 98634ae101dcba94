// Tabs as WAI-ARIA describes them: a click or the arrow keys select one (the others'
// panels hide), only the selected tab is in the Tab order.
"use strict";

/**
 * Make `tabs` (elements with role="tab" and aria-controls) a tab list.
 * @param {Iterable<Element>} tabs
 * @param {(tab: HTMLElement) => void} [onSelect] hears of each selection
 * @returns {(index: number, focus?: boolean) => void} selects the tab at `index`
 */
export function mountTabs(tabs, onSelect = () => {}) {
  const list = [...tabs].map((t) => /** @type {HTMLElement} */ (t));
  const select = (tab, focus) => {
    for (const t of list) {
      const on = t === tab;
      t.setAttribute("aria-selected", String(on));
      t.tabIndex = on ? 0 : -1;
      document.getElementById(t.getAttribute("aria-controls")).hidden = !on;
    }
    onSelect(tab);
    if (focus) tab.focus();
  };
  list.forEach((tab, i) => {
    tab.addEventListener("click", () => select(tab, false));
    tab.addEventListener("keydown", (ev) => {
      if (ev.key === "ArrowRight" || ev.key === "ArrowLeft") {
        const step = ev.key === "ArrowRight" ? 1 : -1;
        select(list[(i + step + list.length) % list.length], true);
        ev.preventDefault();
      }
    });
  });
  return (index, focus = false) => select(list[index], focus);
}
