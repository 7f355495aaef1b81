/* The agent's attachments: the pane's "Attach file" button, the upload (a POST with the
 * session cookie and CSRF token; XMLHttpRequest for its progress), and the file's record
 * then sent as a message of its own, like a reply. Limits are checked by the server;
 * the size is checked here too, to save a doomed upload. */

import { sendMessage } from "./composer.js";
import { number, t, text } from "./dom.js";
import { sizeText } from "./files.js";
import { settings } from "./state.js";

const ATTACHMENTS = {
  url: settings.attachmentsUrl || "/api/v1/attachments",
  maxBytes: Number(settings.attachmentMaxBytes) || 10 * 1024 * 1024,
  accept: settings.attachmentAccept || "",
};

// The server's refusal (its `error` code) → what the agent reads: keys of
// chat/dashboard_text.py, each a sentence about "%(name)s".
const UPLOAD_ERRORS = {
  too_large: "file_too_large",
  unsupported_type: "file_type",
  type_mismatch: "file_mismatch",
  conversation_closed: "file_chat_over",
  rate_limited: "file_rate",
};

const csrfToken = () => {
  const field = document.querySelector('input[name="csrfmiddlewaretoken"]');
  if (field) return field.value;
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
};

const setUploadStatus = (chat, message, isError) => {
  text(chat.pane.upload, message || "");
  chat.pane.upload.classList.toggle("is-error", Boolean(isError));
};

const uploadFile = (chat, file) => {
  if (!file || chat.status !== "active") return;
  const args = { name: file.name, limit: sizeText(ATTACHMENTS.maxBytes) };
  if (file.size > ATTACHMENTS.maxBytes) {
    setUploadStatus(chat, t(UPLOAD_ERRORS.too_large, args), true);
    return;
  }
  const form = new FormData();
  form.append("conversation", String(chat.id));
  form.append("file", file);
  // XMLHttpRequest, not fetch: only it reports upload progress.
  const xhr = new XMLHttpRequest();
  xhr.open("POST", ATTACHMENTS.url);
  xhr.setRequestHeader("X-CSRFToken", csrfToken());
  xhr.responseType = "json";
  chat.pane.attach.disabled = true;
  const uploading = t("uploading", args);
  setUploadStatus(chat, uploading);
  xhr.upload.addEventListener("progress", (event) => {
    if (event.lengthComputable) {
      const done = number(event.loaded / event.total, { style: "percent" });
      setUploadStatus(chat, `${uploading} ${done}`);
    }
  });
  xhr.addEventListener("load", () => {
    chat.pane.attach.disabled = chat.status !== "active";
    const data = xhr.response || {};
    if (xhr.status !== 201) {
      args.reason = data.detail || t("http_error", { status: xhr.status });
      setUploadStatus(chat, t(UPLOAD_ERRORS[data.error] || "file_failed", args), true);
      return;
    }
    setUploadStatus(chat, "");
    sendMessage(chat, "", data);
  });
  xhr.addEventListener("error", () => {
    chat.pane.attach.disabled = chat.status !== "active";
    setUploadStatus(chat, t("file_connection", args), true);
  });
  xhr.send(form);
};

export const attachFiles = (chat) => {
  const { attach, fileInput } = chat.pane;
  fileInput.accept = ATTACHMENTS.accept;
  attach.addEventListener("click", () => fileInput.click());
  fileInput.addEventListener("change", () => {
    const file = fileInput.files[0];
    fileInput.value = "";
    uploadFile(chat, file);
  });
};
