/* The agent's attachments: the pane's "Attach file" button, the upload (a POST with the
 * session cookie and CSRF token; XMLHttpRequest for its progress), and the file's record
 * then sent as a message of its own, like a reply. Limits are checked by the server;
 * the size is checked here too, to save a doomed upload. */

import { sendMessage } from "./composer.js";
import { text } from "./dom.js";
import { sizeText } from "./files.js";
import { settings } from "./state.js";

const ATTACHMENTS = {
  url: settings.attachmentsUrl || "/api/v1/attachments",
  maxBytes: Number(settings.attachmentMaxBytes) || 10 * 1024 * 1024,
  accept: settings.attachmentAccept || "",
};

const UPLOAD_ERRORS = {
  too_large: `is too large: the limit is ${sizeText(ATTACHMENTS.maxBytes)}.`,
  unsupported_type: "cannot be sent: images, PDF, text, Word and Excel files only.",
  type_mismatch: "cannot be sent: its name does not match what the file is.",
  conversation_closed: "was not sent: the chat is over.",
  rate_limited: "was not sent: too many files. Please wait a moment.",
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
  const quoted = `\u201c${file.name}\u201d `;
  if (file.size > ATTACHMENTS.maxBytes) {
    setUploadStatus(chat, quoted + UPLOAD_ERRORS.too_large, true);
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
  setUploadStatus(chat, `Uploading ${file.name}\u2026`);
  xhr.upload.addEventListener("progress", (event) => {
    if (event.lengthComputable) {
      const percent = Math.round((event.loaded * 100) / event.total);
      setUploadStatus(chat, `Uploading ${file.name}\u2026 ${percent}%`);
    }
  });
  xhr.addEventListener("load", () => {
    chat.pane.attach.disabled = chat.status !== "active";
    const data = xhr.response || {};
    if (xhr.status !== 201) {
      const why =
        UPLOAD_ERRORS[data.error] || `was not sent: ${data.detail || `error ${xhr.status}`}.`;
      setUploadStatus(chat, quoted + why, true);
      return;
    }
    setUploadStatus(chat, "");
    sendMessage(chat, "", data);
  });
  xhr.addEventListener("error", () => {
    chat.pane.attach.disabled = chat.status !== "active";
    setUploadStatus(chat, `${quoted}was not sent: the connection failed.`, true);
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
