"""Look of the UI: a Gradio theme with local system fonts (no font CDN), CSS, and the page script."""
from __future__ import annotations

import gradio as gr

SYSTEM_FONTS = ["system-ui", "-apple-system", "Segoe UI", "Roboto", "Helvetica Neue", "Arial", "sans-serif"]
MONO_FONTS = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"]


def make_theme() -> gr.themes.Base:
    """Plain-string fonts: Gradio emits no Google Fonts link, so the browser fetches nothing outside."""
    return gr.themes.Soft(primary_hue="indigo", neutral_hue="slate", font=SYSTEM_FONTS, font_mono=MONO_FONTS)


CSS = """
.jd-header {display:flex; align-items:baseline; gap:1rem; flex-wrap:wrap}
.jd-header h1 {margin:0; font-size:1.4rem}
.jd-status, .jd-stats {font-size:.85rem; color:var(--body-text-color-subdued)}
.jd-stats:empty {display:none}
.jd-hidden {display:none !important}
#jd-chat-pick input, #jd-ws input {text-overflow:ellipsis; padding-right:22px}  /* a long title ends in "...", clear of the arrow */
/* Gradio's "Clear" (trash) button empties the chat on the page only, not the saved chat: Delete chat does that */
#jd-chat .top-panel button[aria-label="Clear"] {display:none}
/* the upload box's own icon sits under its label (hidden by it at any width, overlapping at 400 px) */
#jd-upload .icon-wrap {display:none}
/* on a phone the panels stack: a shorter chat keeps the question box nearer to the answers */
@media (max-width: 640px) { #jd-chat {height: 60vh !important; min-height: 320px} }
.jd-docs table {width:100%; border-collapse:collapse; font-size:.85rem; border:none !important; margin:0}
.jd-docs th {text-align:left; font-weight:600; border-bottom:1px solid var(--border-color-primary); padding:2px 4px}
.jd-docs td {border-bottom:1px solid var(--border-color-primary); padding:4px; vertical-align:top}
.jd-docs .jd-title {font-weight:600; overflow-wrap:anywhere; word-break:normal}
.jd-docs .jd-file {color:var(--body-text-color-subdued); font-size:.75rem; overflow-wrap:anywhere}
.jd-docs .jd-n, .jd-docs .jd-pages, .jd-docs .jd-tokens {white-space:nowrap}
.jd-empty {color:var(--body-text-color-subdued); font-size:.9rem; padding:.5rem 0}
.jd-pill {display:inline-block; border-radius:999px; padding:0 .5em; font-size:.75rem;
          border:1px solid var(--border-color-primary); white-space:nowrap}
.jd-ok {color:#15803d; border-color:#86efac}
.jd-warn {color:#b45309; border-color:#fcd34d}
.jd-bad {color:#b91c1c; border-color:#fca5a5; background:#fef2f2}
.jd-bar {position:relative; height:8px; border-radius:4px; background:var(--neutral-200); overflow:hidden; margin:3px 0}
.jd-bar-fill {position:absolute; left:0; top:0; bottom:0; background:var(--primary-500); transition:width .2s}
.jd-bar-cached {position:absolute; left:0; top:0; bottom:0; background:#16a34a}
.jd-bar-over .jd-bar-fill {background:#d97706}
.jd-progress-label, .jd-note {font-size:.8rem}
.jd-uploads {list-style:none; padding:0; margin:0}
.jd-up {font-size:.8rem; margin:.35rem 0}
.jd-up-name {font-weight:600; word-break:break-all}
.jd-up-error .jd-up-text {color:#b91c1c}
.jd-up-error .jd-bar-fill {background:#dc2626; width:100% !important}
.jd-up-added .jd-bar-fill {background:#16a34a}
.jd-up-duplicate .jd-up-text {color:#b45309}
.cite-chip {display:inline-flex; align-items:center; gap:.25em; font-size:.78rem; line-height:1.3;
            padding:0 .45em; margin:0 .1em; border-radius:6px; cursor:pointer; vertical-align:baseline;
            border:1px solid #a5b4fc; background:#eef2ff; color:#3730a3; font-family:inherit}
.cite-chip:hover {background:#e0e7ff}
.cite-chip.cite-verified .cite-mark {color:#15803d; font-weight:700}
.cite-chip.cite-unverified {border-color:#fca5a5; background:#fef2f2; color:#991b1b}
.cite-chip.cite-unverified .cite-mark {font-weight:800}
.cite-chip.cite-pending, .cite-chip.cite-missing, .cite-chip.cite-removed {cursor:default; border-style:dashed; background:transparent; color:inherit}
.jd-more-cites {margin-top:.4rem; font-size:.8rem}
.jd-stopped {color:var(--body-text-color-subdued); font-size:.85em}
.jd-source-head .jd-title {font-weight:700}
.jd-quote {margin:.4rem 0; padding:.2rem .6rem; border-left:3px solid var(--primary-400); font-size:.85rem;
           color:var(--body-text-color-subdued)}
.jd-page-text {max-height:22rem; overflow:auto; white-space:pre-wrap; font-size:.8rem; line-height:1.35;
               border:1px solid var(--border-color-primary); border-radius:6px; padding:.5rem}
.jd-page-text mark {background:#fde047; padding:0 1px}
.jd-page-text.jd-unverified mark {background:#fecaca}
.jd-docs table, .jd-docs tr, .jd-docs thead, .jd-docs tbody {border:none !important}
.jd-docs th, .jd-docs td {border-left:none !important; border-right:none !important; border-top:none !important}
/* Right-to-left text (Arabic, Hebrew): each paragraph, list item, quote, title, typed line and page
   line takes its direction from its first letter, as dir="auto" would (Gradio writes dir="ltr" on
   every message and its sanitizer may drop the attribute); a chip is one unit at the end of the line */
#jd-chat .message-content :is(p, li, blockquote, h1, h2, h3, h4, h5, h6, td, th), .jd-quote, .jd-page-text,
.jd-source-head .jd-title, .jd-docs .jd-title, .jd-docs .jd-file, .jd-up-name, #jd-question textarea
{unicode-bidi:plaintext; text-align:start}
#jd-confirm, #jd-chat-confirm, #jd-doc-confirm {border:1px solid #fca5a5; border-radius:8px; padding:.5rem;
                                                background:#fef2f2}
"""

# Citation chips live inside chat messages (HTML). One delegated listener turns a click on a chip
# (class jd-cite-<message>-<index>) into a value of the hidden #jd-cite-target textbox, whose change event opens the source viewer.
# Another makes a message's copy button copy the text it shows.
JS = """
() => {
  if (window.__jdChips) return;
  window.__jdChips = true;
  document.addEventListener('click', (e) => {
    const chip = e.target.closest('.cite-chip');
    const key = chip && [...chip.classList].find((c) => c.startsWith('jd-cite-'));
    if (!key) return;
    e.preventDefault();
    e.stopPropagation();
    const box = document.querySelector('#jd-cite-target textarea, #jd-cite-target input');
    if (!box) return;
    box.value = key.slice('jd-cite-'.length).replace('-', ':') + '|' + Date.now();
    box.dispatchEvent(new Event('input', {bubbles: true}));
  }, true);
  /* Gradio's "Copy message" copies the message's source: an answer's HTML (chip buttons, &quot;) and
     a question's escaped Markdown. The text the message shows is copied after it instead, each chip
     as "[file, p. 3]" (laid out off screen: innerText needs a rendered element). */
  const shown = (message) => {
    const copy = message.cloneNode(true);
    copy.querySelectorAll('.cite-chip').forEach((chip) => {
      chip.querySelector('.cite-mark')?.remove();
      chip.replaceWith('[' + chip.textContent.trim() + ']');
    });
    copy.style.cssText = 'position:fixed; left:-10000px; top:0';
    document.body.append(copy);
    const text = copy.innerText.replace(/\\u00a0/g, ' ').trim();
    copy.remove();
    return text;
  };
  document.addEventListener('click', (e) => {
    const button = e.target.closest('#jd-chat button[aria-label="Copy message"]');
    const row = button && button.closest('.message-buttons')?.previousElementSibling;
    const parts = row ? [...row.querySelectorAll('.message-content')].map(shown) : [];
    if (!parts.length || !navigator.clipboard) return;
    setTimeout(() => navigator.clipboard.writeText(parts.join('\\n\\n')), 0);
  }, true);
}
"""

# The question box's unsent text, kept in this browser per workspace (localStorage key
# "jambadocs-draft:<workspace id>"), so a reload or a workspace switch does not lose it. It follows
# the box, whoever changes it: typing, the ask emptying it, a refusal putting the question back.
SAVE_DRAFT = """
(text, ws) => {
  if (ws === null || ws === undefined || ws === '') return;
  try {
    if (text) localStorage.setItem('jambadocs-draft:' + ws, text);
    else localStorage.removeItem('jambadocs-draft:' + ws);
  } catch (e) {}                      // storage off or full: the box works as before
}
"""
RESTORE_DRAFT = """
(ws) => {
  if (ws === null || ws === undefined || ws === '') return '';
  try { return localStorage.getItem('jambadocs-draft:' + ws) || ''; } catch (e) { return ''; }
}
"""

SCROLL_TO_PASSAGE = """
() => {
  setTimeout(() => {
    const mark = document.getElementById('jd-passage');
    const box = document.getElementById('jd-page-text');
    if (box) box.scrollTop = mark ? Math.max(0, mark.offsetTop - box.offsetTop - box.clientHeight / 3) : 0;
    const viewer = document.getElementById('jd-viewer');
    if (viewer && viewer.getBoundingClientRect().top > window.innerHeight) viewer.scrollIntoView();
  }, 150);
}
"""

