// A small, safe Markdown subset rendered as DOM nodes (never innerHTML): headings (#..###),
// paragraphs, - and 1. lists, > quotes, ``` code blocks, and inline `code`, **bold**,
// *italic*, [links](https://…). Link targets other than http(s), mailto and site paths
// are shown as text.
"use strict";

const INLINE = /(`[^`\n]+`)|(\*\*[^*\n]+\*\*)|(\*[^*\n]+\*|_[^_\n]+_)|(\[[^\]\n]+\]\([^)\s]+\))/g;

function safeHref(url) {
  if (/^(https?:|mailto:)/i.test(url)) return url;
  if (/^\/(?!\/)/.test(url)) return url;
  return null;
}

function inline(text) {
  const nodes = [];
  let last = 0;
  for (const match of text.matchAll(INLINE)) {
    if (match.index > last) nodes.push(document.createTextNode(text.slice(last, match.index)));
    const [token] = match;
    let node;
    if (match[1]) {
      node = document.createElement("code");
      node.textContent = token.slice(1, -1);
    } else if (match[2]) {
      node = document.createElement("strong");
      node.append(...inline(token.slice(2, -2)));
    } else if (match[3]) {
      node = document.createElement("em");
      node.append(...inline(token.slice(1, -1)));
    } else {
      const [, label, url] = /^\[([^\]]+)\]\(([^)\s]+)\)$/.exec(token);
      const href = safeHref(url);
      if (href) {
        node = document.createElement("a");
        node.href = href;
        node.rel = "noopener noreferrer";
        node.append(...inline(label));
      } else {
        node = document.createTextNode(token);
      }
    }
    nodes.push(node);
    last = match.index + token.length;
  }
  if (last < text.length) nodes.push(document.createTextNode(text.slice(last)));
  return nodes;
}

/** The Markdown `source` as a DocumentFragment of safe elements. */
export function renderMarkdown(source) {
  const out = document.createDocumentFragment();
  const lines = (source || "").replace(/\r\n?/g, "\n").split("\n");
  let i = 0;
  const isBlockStart = (line) => /^(#{1,3}\s|```|>\s?|[-*]\s|\d+\.\s)/.test(line);
  while (i < lines.length) {
    const line = lines[i];
    if (!line.trim()) {
      i++;
      continue;
    }
    if (line.startsWith("```")) {
      const code = [];
      i++;
      while (i < lines.length && !lines[i].startsWith("```")) code.push(lines[i++]);
      i++;
      const pre = document.createElement("pre");
      const c = document.createElement("code");
      c.textContent = code.join("\n");
      pre.append(c);
      out.append(pre);
      continue;
    }
    const heading = /^(#{1,3})\s+(.*)$/.exec(line);
    if (heading) {
      // Page headings are h1/h2: the content's start at h3.
      const h = document.createElement(`h${heading[1].length + 2}`);
      h.append(...inline(heading[2]));
      out.append(h);
      i++;
      continue;
    }
    const listKind = /^[-*]\s/.test(line) ? "ul" : /^\d+\.\s/.test(line) ? "ol" : null;
    if (listKind) {
      const list = document.createElement(listKind);
      const itemRe = listKind === "ul" ? /^[-*]\s+(.*)$/ : /^\d+\.\s+(.*)$/;
      while (i < lines.length && itemRe.test(lines[i])) {
        const li = document.createElement("li");
        li.append(...inline(itemRe.exec(lines[i])[1]));
        list.append(li);
        i++;
      }
      out.append(list);
      continue;
    }
    if (/^>\s?/.test(line)) {
      const quote = document.createElement("blockquote");
      const text = [];
      while (i < lines.length && /^>\s?/.test(lines[i])) text.push(lines[i++].replace(/^>\s?/, ""));
      const p = document.createElement("p");
      p.append(...inline(text.join(" ")));
      quote.append(p);
      out.append(quote);
      continue;
    }
    const para = [];
    while (i < lines.length && lines[i].trim() && !(para.length && isBlockStart(lines[i]))) para.push(lines[i++]);
    const p = document.createElement("p");
    p.append(...inline(para.join(" ")));
    out.append(p);
  }
  return out;
}
