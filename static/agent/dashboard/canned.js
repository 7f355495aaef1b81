/* The agent's canned responses and the dialog to keep them (add, edit, delete; shared
 * ones too for supervisors). The list comes with `canned` after every `ready` and again
 * whenever it changes (this tab's edits, another tab's, a supervisor's or an admin's:
 * the server rings every affected socket), so expanding `/shortcut` in a reply
 * (canned-suggestions.js) never waits for the network. */

import { announce, part, t, text, toast } from "./dom.js";
import { send } from "./socket.js";

const CANNED_ERROR_CODES = [
  "bad_shortcut",
  "duplicate_shortcut",
  "too_many",
  "too_long",
  "bad_frame",
  "forbidden",
  "not_found",
  "rate_limited",
  "unavailable",
];

const byId = (id) => document.getElementById(id);

export const canned = {
  responses: [],
  byShortcut: new Map(), // shortcut -> response
  canEditShared: false,
  editing: null, // id of the response in the form, or null for a new one
  awaiting: null, // "save" or "delete" while a request is unanswered
  dialog: byId("canned-dialog"),
  open: byId("canned-open"),
  close: byId("canned-close"),
  list: byId("canned-list"),
  empty: byId("canned-empty"),
  form: byId("canned-form"),
  formTitle: byId("canned-form-title"),
  shortcut: byId("canned-shortcut"),
  body: byId("canned-body"),
  sharedToggle: byId("canned-shared-toggle"),
  shared: byId("canned-shared"),
  error: byId("canned-error"),
  save: byId("canned-save"),
  cancel: byId("canned-cancel"),
  itemTemplate: byId("canned-item-template"),
};

const showCannedError = (message) => {
  text(canned.error, message);
  canned.error.hidden = !message;
};

const setEditing = (response) => {
  canned.editing = response ? response.id : null;
  canned.shortcut.value = response ? response.shortcut : "";
  canned.body.value = response ? response.body : "";
  canned.shared.checked = false;
  text(canned.formTitle, response ? t("edit_shortcut", { shortcut: response.shortcut }) : t("new_response"));
  text(canned.save, t(response ? "save_changes" : "add_response"));
  canned.cancel.hidden = !response;
  canned.sharedToggle.hidden = !canned.canEditShared || Boolean(response);
  showCannedError("");
};

const deleteCanned = (response) => {
  if (!window.confirm(t("delete_confirm", { shortcut: response.shortcut }))) return;
  if (!send({ type: "canned.delete", id: response.id })) {
    toast(t("take_offline"));
    return;
  }
  canned.awaiting = "delete";
  if (canned.editing === response.id) setEditing(null);
};

const cannedItem = (response) => {
  const fragment = canned.itemTemplate.content.cloneNode(true);
  const item = part(fragment, ".canned-item");
  item.dataset.shortcut = response.shortcut;
  text(part(item, ".canned-item-shortcut"), `/${response.shortcut}`);
  part(item, ".canned-item-tag").hidden = !response.shared;
  text(part(item, ".canned-item-body"), response.body);
  const edit = part(item, ".canned-edit");
  const remove = part(item, ".canned-delete");
  edit.setAttribute("aria-label", t("edit_shortcut", { shortcut: response.shortcut }));
  remove.setAttribute("aria-label", t("delete_shortcut", { shortcut: response.shortcut }));
  if (!response.editable) {
    edit.hidden = true;
    remove.hidden = true;
  }
  edit.addEventListener("click", () => {
    setEditing(response);
    canned.body.focus();
  });
  remove.addEventListener("click", () => deleteCanned(response));
  return fragment;
};

const renderCannedList = () => {
  canned.list.textContent = "";
  canned.responses.forEach((response) => canned.list.appendChild(cannedItem(response)));
  canned.empty.hidden = canned.responses.length > 0;
  canned.sharedToggle.hidden = !canned.canEditShared || canned.editing !== null;
};

/* After each `ready`: a change cut off by the reconnect got no answer, and the fresh list
   shows whether it took effect. */
export const reloadCanned = () => {
  canned.awaiting = null;
  canned.save.disabled = false;
  send({ type: "canned.list" });
};

// --- frames --------------------------------------------------------------------------

/* A `canned` frame: the list as it is now (canned-suggestions.js, onCanned). */
export const setCannedResponses = (frame) => {
  canned.responses = Array.isArray(frame.responses) ? frame.responses : [];
  canned.canEditShared = frame.can_edit_shared === true;
  canned.byShortcut = new Map();
  canned.responses.forEach((response) => canned.byShortcut.set(response.shortcut, response));
  // The snippet being edited was deleted elsewhere: what is typed becomes a new one.
  const stillListed = canned.responses.some((response) => response.id === canned.editing);
  if (canned.editing !== null && !stillListed) setEditing(null);
  renderCannedList();
};

export const onCannedSaved = (frame) => {
  if (canned.awaiting !== "save") return;
  canned.awaiting = null;
  canned.save.disabled = false;
  const shortcut = frame.response ? frame.response.shortcut : "";
  setEditing(null);
  announce(t("saved_shortcut", { shortcut }));
};

export const onCannedDeleted = () => {
  if (canned.awaiting !== "delete") return;
  canned.awaiting = null;
  announce(t("canned_deleted"));
};

/* An `error` answering this tab's canned request; true if it was one. The server
   answers one socket's frames in order, so the awaited answer is the next one. */
export const cannedError = (frame) => {
  if (!canned.awaiting || !CANNED_ERROR_CODES.includes(frame.code)) return false;
  const what = canned.awaiting;
  canned.awaiting = null;
  canned.save.disabled = false;
  let detail = frame.detail || frame.code;
  if (frame.code === "bad_frame" && what === "save") detail = t("write_text");
  if (frame.code === "unavailable") {
    detail = t("cannot_save");
  }
  if (what === "save" && canned.dialog.open) {
    showCannedError(detail);
    const wrong = frame.code === "bad_shortcut" || frame.code === "duplicate_shortcut";
    (wrong ? canned.shortcut : canned.body).focus();
  } else {
    toast(detail);
  }
  return true;
};

// --- the dialog ----------------------------------------------------------------------

const saveCanned = (event) => {
  event.preventDefault();
  const frame = { shortcut: canned.shortcut.value, body: canned.body.value };
  if (canned.editing !== null) {
    frame.type = "canned.update";
    frame.id = canned.editing;
  } else {
    frame.type = "canned.create";
    if (canned.canEditShared && canned.shared.checked) frame.shared = true;
  }
  // The server checks everything; the form only says what it answers.
  if (!send(frame)) {
    showCannedError(t("save_offline"));
    return;
  }
  showCannedError("");
  canned.awaiting = "save";
  canned.save.disabled = true;
};

export const setupCanned = () => {
  canned.form.addEventListener("submit", saveCanned);
  canned.cancel.addEventListener("click", () => {
    setEditing(null);
    canned.shortcut.focus();
  });
  canned.open.addEventListener("click", () => {
    renderCannedList();
    canned.dialog.showModal();
    canned.shortcut.focus();
  });
  canned.close.addEventListener("click", () => canned.dialog.close());
  /* `close` fires a task after the dialog hides: by then the agent may already be typing
     in a composer, and taking focus back would send their keys to the button. */
  canned.dialog.addEventListener("close", () => {
    const active = document.activeElement;
    if (!active || active === document.body || canned.dialog.contains(active)) {
      canned.open.focus();
    }
  });
};
