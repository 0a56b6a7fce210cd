"""The Gradio Blocks app: workspaces, uploads, documents and budget, streaming chat, source viewer.

`build_ui(services)` lays out the components and wires them to `ui.handlers.Handlers`, which does
everything through `app.services.Services`. Theme, CSS and the page script come from ui.theme and
are passed by ui.server to `gr.mount_gradio_app` (Gradio 6 takes them there, not on Blocks).
"""
from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import gradio as gr  # noqa: E402

from ui import render  # noqa: E402
from ui.handlers import UPLOAD_TYPES, Handlers  # noqa: E402
from ui.theme import RESTORE_DRAFT, SAVE_DRAFT, SCROLL_TO_PASSAGE  # noqa: E402


# Gradio's temporary files (page images, chat exports) are swept every hour and removed once a day
# old (a tab left open longer may find its export link gone: ask or switch chats to make a new one).
TEMP_FILES_SWEEP_S = 3600
TEMP_FILES_MAX_AGE_S = 24 * 3600
ASKS_AT_ONCE = 16          # asks (of different tabs) in the handler at once; app.qa runs one at a time


def _keep_sent_names(box: gr.File) -> gr.File:
    """Make the file box's paths also carry the name the browser sent (`orig_name`): Gradio names
    its copy by that name cut to 200 bytes, so a longer name (64 emoji) would reach the workspace
    cut. (An instance hook: a gr.File subclass would need a frontend and write a .pyi next to us.)"""
    process = getattr(box, "_process_single_file", None)
    if process is None:             # another Gradio: its names stand (cut at 200 bytes at worst)
        return box

    def with_sent_name(f):
        path = process(f)
        try:
            path.orig_name = f.orig_name
        except AttributeError:      # a plain str path: the name Gradio gave it stands
            pass
        return path

    box._process_single_file = with_sent_name
    return box


def _confirmation(elem_id: str, yes_label: str = "Yes, delete it"):
    """A hidden "delete?" box: (box, its text, the yes button, "Cancel"); ids `elem_id`, -yes, -no."""
    with gr.Column(visible=False, elem_id=elem_id) as box:
        text = gr.HTML(padding=False)            # the handler escapes the names it quotes
        with gr.Row():
            yes = gr.Button(yes_label, variant="stop", size="sm", elem_id=f"{elem_id}-yes")
            no = gr.Button("Cancel", size="sm", elem_id=f"{elem_id}-no")
    return box, text, yes, no


def _dismiss():
    """Cancel: hide the box and forget what it named."""
    return gr.update(visible=False), None


def build_ui(services) -> gr.Blocks:
    """The whole browser UI over one Services object."""
    h = Handlers(services)
    # All of Gradio's temporary files go at shutdown; uploads as soon as they are read (Handlers.upload).
    with gr.Blocks(title="jambadocs", fill_width=True, analytics_enabled=False,
                   delete_cache=(TEMP_FILES_SWEEP_S, TEMP_FILES_MAX_AGE_S)) as demo:
        prefs = gr.BrowserState({"ws": None, "chat": None}, storage_key="jambadocs-ui")
        ws_id = gr.State(None)
        # the open workspace and chat as the page itself holds them (gr.State lives on the server, and
        # a restarted server has none for a page left open): Handlers._restored
        shown = gr.JSON({"ws": None, "chat": None}, visible=False)
        chat_id = gr.State(None)
        viewer = gr.State(None)
        ws_to_delete = gr.State(None)        # what a visible confirmation names (not what is open later)
        chat_to_delete = gr.State(None)
        doc_to_remove = gr.State(None)

        with gr.Row(elem_classes="jd-header"):
            gr.HTML("<h1>jambadocs</h1>", padding=False)
            engine_line = gr.HTML(render.engine_status({}), padding=False)

        with gr.Row(equal_height=False):
            # ---- left: workspaces and documents ----
            with gr.Column(scale=4, min_width=320):
                ws_dd = gr.Dropdown(label="Workspace", choices=[], elem_id="jd-ws", interactive=True)
                ws_name = gr.Textbox(label="Workspace name", placeholder="Name for a new workspace, or the new name",
                                     elem_id="jd-ws-name", max_lines=1)
                with gr.Row():
                    create_btn = gr.Button("Create", size="sm", min_width=60, elem_id="jd-ws-create")
                    rename_btn = gr.Button("Rename", size="sm", min_width=60, elem_id="jd-ws-rename")
                    delete_btn = gr.Button("Delete", size="sm", min_width=60, variant="stop", elem_id="jd-ws-delete")
                confirm_box, confirm_text, confirm_yes, confirm_no = _confirmation("jd-confirm")
                files = _keep_sent_names(gr.File(label="Add documents (drop several files)", file_count="multiple",
                                                 file_types=UPLOAD_TYPES, elem_id="jd-upload", height=120))
                with gr.Accordion("Password for protected PDFs", open=False, elem_id="jd-password-box") as password_box:
                    password = gr.Textbox(show_label=False, type="password", max_lines=1,
                                          placeholder="used for the next upload only", elem_id="jd-password")
                uploads = gr.HTML(render.upload_progress([]), padding=False)
                with gr.Column(visible=False, elem_id="jd-failed") as failed_box:   # see Handlers._failures
                    failed_html = gr.HTML("", padding=False)
                    dismiss_btn = gr.Button("Dismiss", size="sm", elem_id="jd-failed-dismiss")
                failed_seen = gr.State(None)
                docs_html = gr.HTML(render.documents_table([], None), padding=False)
                budget_html = gr.HTML(render.budget_gauge(None, []), padding=False)
                with gr.Row(equal_height=True):
                    doc_dd = gr.Dropdown(label="Remove a document", choices=[], scale=4, elem_id="jd-doc-pick")
                    remove_btn = gr.Button("Remove", size="sm", scale=1, min_width=80, elem_id="jd-doc-remove")
                doc_confirm, doc_confirm_text, doc_confirm_yes, doc_confirm_no = _confirmation(
                    "jd-doc-confirm", "Yes, remove it")

            # ---- middle: chat ----
            with gr.Column(scale=5, min_width=380):
                with gr.Row(equal_height=True):
                    chat_dd = gr.Dropdown(label="Chat", choices=[], scale=4, min_width=140, elem_id="jd-chat-pick")
                    new_chat_btn = gr.Button("New chat", size="sm", scale=1, min_width=76, elem_id="jd-new-chat")
                    export_btn = gr.DownloadButton("Export .md", value=None, size="sm", scale=1, min_width=76,
                                                   elem_id="jd-export", interactive=False)
                    delete_chat_btn = gr.Button("Delete chat", size="sm", scale=1, min_width=76, variant="stop",
                                                elem_id="jd-chat-delete")
                chat_confirm, chat_confirm_text, chat_confirm_yes, chat_confirm_no = _confirmation("jd-chat-confirm")
                chatbot = gr.Chatbot(elem_id="jd-chat", height=520, show_label=False, feedback_options=None,
                                     buttons=["copy"],
                                     placeholder="Questions about this workspace's documents and their answers, "
                                                 "with sources, appear here.")
                prefill_html = gr.HTML("", padding=False)
                with gr.Row(equal_height=True):
                    # min_width: on a phone the buttons wrap below a full-width box (it was 140 px wide)
                    question = gr.Textbox(show_label=False, placeholder="Ask a question about the documents",
                                          scale=6, min_width=240, max_lines=6, elem_id="jd-question",
                                          submit_btn=False)
                    ask_btn = gr.Button("Ask", variant="primary", scale=1, min_width=70, elem_id="jd-ask")
                    stop_btn = gr.Button("Stop", scale=1, min_width=70, elem_id="jd-stop")
                stats_html = gr.HTML(render.answer_stats(None), padding=False)

            # ---- right: source viewer ----
            with gr.Column(scale=5, min_width=320, elem_id="jd-viewer"):
                gr.Markdown("### Source")
                source_head = gr.HTML('<div class="jd-empty" id="jd-source-head">Click a citation chip in an '
                                      "answer to see the cited page here.</div>", padding=False)
                page_image = gr.Image(type="pil", format="png", interactive=False, show_label=False,
                                      elem_id="jd-page-image", visible=False, buttons=["fullscreen"], height=700)
                with gr.Row(visible=False) as nav_row:
                    prev_btn = gr.Button("\u2190 Previous", size="sm", elem_id="jd-prev")
                    next_btn = gr.Button("Next \u2192", size="sm", elem_id="jd-next")
                page_text = gr.HTML("", padding=False)

        # A chip click writes "message_id:citation_index|nonce" here (see ui.theme.JS).
        cite_box = gr.Textbox(elem_id="jd-cite-target", elem_classes=["jd-hidden"], container=False,
                              show_label=False)

        view_outputs = [ws_dd, docs_html, budget_html, doc_dd, chat_dd, chatbot, export_btn, stats_html,
                        ws_id, chat_id, prefs, shown, failed_box, failed_html, failed_seen]
        viewer_outputs = [source_head, page_image, nav_row, page_text, viewer]
        page_turns = [prev_btn, next_btn]     # turning pages: enabled where there is a page to turn to
        h.bind(ws_dd=ws_dd, docs_html=docs_html, budget_html=budget_html, doc_dd=doc_dd, chat_dd=chat_dd,
               chatbot=chatbot, export_btn=export_btn, stats_html=stats_html, ws_id=ws_id, chat_id=chat_id,
               prefs=prefs, shown=shown, source_head=source_head, page_image=page_image, nav_row=nav_row,
               page_text=page_text, viewer=viewer, engine_line=engine_line, ws_name=ws_name,
               confirm_box=confirm_box, chat_confirm=chat_confirm, doc_confirm=doc_confirm, uploads=uploads, files=files, password=password,
               password_box=password_box, failed_box=failed_box, failed_html=failed_html, failed_seen=failed_seen,
               question=question, prefill_html=prefill_html, create_btn=create_btn, delete_btn=delete_btn,
               new_chat_btn=new_chat_btn, delete_chat_btn=delete_chat_btn, prev_btn=prev_btn, next_btn=next_btn,
               ask_btn=ask_btn)
        # what an ask locks while its answer is written (Handlers.navigation)
        lock_outputs = [ws_dd, chat_dd, new_chat_btn, create_btn, delete_btn, delete_chat_btn, ask_btn]

        loaded = demo.load(h.on_load, inputs=[prefs], outputs=view_outputs + [engine_line])
        loaded.then(h.after_load, inputs=[ws_id], outputs=[engine_line, docs_html, budget_html])
        # an answer still being written into the chat opened (e.g. the page was reloaded mid-answer)
        follow_event = loaded.then(h.follow, inputs=[ws_id, chat_id], outputs=[question, prefill_html] + view_outputs,
                                   concurrency_limit=ASKS_AT_ONCE)
        leaves = [follow_event]       # what opens another chat stops following that answer (not the answer)

        # workspaces
        ws_dd.input(h.switch_workspace, inputs=[ws_dd], outputs=view_outputs + viewer_outputs, cancels=leaves)
        create_btn.click(h.create_workspace, inputs=[ws_name], outputs=view_outputs + viewer_outputs + [ws_name],
                         cancels=leaves)
        ws_name.submit(h.create_workspace, inputs=[ws_name], outputs=view_outputs + viewer_outputs + [ws_name],
                       cancels=leaves)
        rename_btn.click(h.rename_workspace, inputs=[ws_id, ws_name, chat_id], outputs=view_outputs + [ws_name])
        delete_btn.click(h.ask_delete, inputs=[ws_id], outputs=[confirm_box, confirm_text, ws_to_delete])
        confirm_no.click(_dismiss, outputs=[confirm_box, ws_to_delete])
        confirm_yes.click(h.delete_workspace, inputs=[ws_to_delete],
                          outputs=view_outputs + viewer_outputs + [confirm_box])

        # documents
        # "multiple": files dropped while an upload is still being read queue behind it (Gradio's
        # default, "once", would drop them without a word)
        # (`shown` too: after a server restart the session's states are gone, the page's are not)
        files.upload(h.upload, inputs=[files, ws_id, password, chat_id, shown],
                     outputs=[uploads, files, password, password_box] + view_outputs, trigger_mode="multiple")
        dismiss_btn.click(h.dismiss_failures, inputs=[ws_id, failed_seen], outputs=[failed_box, failed_html, failed_seen])
        remove_btn.click(h.ask_remove_document, inputs=[ws_id, doc_dd],
                         outputs=[doc_confirm, doc_confirm_text, doc_to_remove])
        doc_confirm_no.click(_dismiss, outputs=[doc_confirm, doc_to_remove])
        doc_confirm_yes.click(h.remove_document, inputs=[ws_id, doc_to_remove, chat_id, viewer],
                              outputs=view_outputs + viewer_outputs + [doc_confirm])

        # chat
        chat_dd.input(h.switch_chat, inputs=[ws_id, chat_dd], outputs=view_outputs, cancels=leaves)
        new_chat_btn.click(h.new_chat, inputs=[ws_id], outputs=view_outputs, cancels=leaves)
        delete_chat_btn.click(h.ask_delete_chat, inputs=[chat_id],
                              outputs=[chat_confirm, chat_confirm_text, chat_to_delete])
        chat_confirm_no.click(_dismiss, outputs=[chat_confirm, chat_to_delete])
        chat_confirm_yes.click(h.delete_chat, inputs=[ws_id, chat_to_delete, chat_id],
                               outputs=view_outputs + viewer_outputs + [chat_confirm])
        # One event for Ask and Enter: "once" ignores a second question sent while one is answered (two
        # listeners queued it behind the first, and Stop then left both as "..." on the page). Asks of
        # other tabs run beside it: app.qa serves them in turn and shows them their place in the queue.
        ask_event = gr.on([ask_btn.click, question.submit], h.ask, inputs=[question, ws_id, chat_id, chatbot, shown],
                          outputs=[question, prefill_html] + view_outputs + lock_outputs[2:],
                          trigger_mode="once", concurrency_limit=ASKS_AT_ONCE)
        ask_event.then(h.unlocked, outputs=lock_outputs)    # unlocked however the ask ended (a bug's error too)
        stop_btn.click(h.stopped, inputs=[ws_id, chat_id], outputs=[prefill_html] + view_outputs + lock_outputs[2:],
                       cancels=[ask_event, follow_event])

        # the unsent question, per workspace, in the browser (no server round trip)
        question.change(None, inputs=[question, ws_dd], js=SAVE_DRAFT, queue=False)
        ws_dd.change(None, inputs=[ws_dd], outputs=[question], js=RESTORE_DRAFT, queue=False)

        # source viewer
        cite_box.change(h.open_citation, inputs=[cite_box, ws_id, chat_id], outputs=viewer_outputs + page_turns) \
            .then(None, js=SCROLL_TO_PASSAGE)
        for button, step in ((prev_btn, -1), (next_btn, +1)):    # a turned page opens at its top
            button.click(h.turn_page(step), inputs=[viewer, ws_id], outputs=viewer_outputs + page_turns) \
                .then(None, js=SCROLL_TO_PASSAGE)
    return demo
