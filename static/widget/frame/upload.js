/* supportdesk widget frame: sending a file the visitor picked (docs/protocol.md
 * "Attachments"), with its progress and the reasons it may be refused.
 *
 * Loaded by main.js with the first file the visitor picks (a dynamic import, outside the
 * frame's first-load budget: tests/test_widget_size.py), with its strings in the
 * visitor's language. The file then goes out as a message through main.js's outbox. */
import { cfg, moreText, num, sizeText, state, t, ui } from './chat.js';

await moreText();

// Error code -> the key of its sentence, which names the file.
const UPLOAD_ERRORS = {
  too_large: 'file_too_large',
  unsupported_type: 'file_type',
  type_mismatch: 'file_mismatch',
  no_conversation: 'file_no_chat',
  rate_limited: 'file_rate',
};

const setUploadStatus = (text, isError) => {
  ui.upload.hidden = !text;
  ui.upload.textContent = text || '';
  ui.upload.classList.toggle('sd-error', !!isError);
};

// An uploaded file is sent as a message of its own, through the outbox like any other.
export const uploadFile = (file, sendOwn) => {
  const args = { name: file.name, limit: sizeText(cfg.attachment_max_bytes) };
  const refused = (key) => setUploadStatus(t(key, args), true);
  const { conv } = state;
  if (!state.token || !conv || conv.status === 'closed') return refused('file_no_chat');
  if (file.size > cfg.attachment_max_bytes) return refused('file_too_large');
  const form = new FormData();
  form.append('file', file);
  // XMLHttpRequest, not fetch: only it reports upload progress.
  const xhr = new XMLHttpRequest();
  xhr.open('POST', cfg.attachments_url);
  xhr.setRequestHeader('Authorization', 'Bearer ' + state.token);
  xhr.responseType = 'json';
  ui.attach.disabled = true;
  const uploading = t('uploading', args);
  setUploadStatus(uploading);
  xhr.upload.onprogress = (e) => {
    if (e.lengthComputable) setUploadStatus(uploading + ' ' + num(e.loaded / e.total, { style: 'percent' }));
  };
  xhr.onload = () => {
    ui.attach.disabled = state.stopped;
    const data = xhr.response || {};
    if (xhr.status !== 201) {
      args.reason = data.detail || t('http_error', { status: xhr.status });
      return refused(UPLOAD_ERRORS[data.error] || 'file_failed');
    }
    setUploadStatus(null);
    sendOwn('', data);
  };
  xhr.onerror = () => {
    ui.attach.disabled = state.stopped;
    refused('file_connection');
  };
  xhr.send(form);
};

