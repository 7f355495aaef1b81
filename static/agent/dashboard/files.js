/* How a message's file is shown: an image's thumbnail, or the file's name and size;
 * either is a download link. The session cookie opens a file's URLs, which answer only
 * the chat's participants (and supervisors); only the server's own attachment URLs
 * become an href or a src. */

import { number, systemText, t, text } from "./dom.js";

const FILE_URL = /^\/attachments\/\d+\/(thumbnail\/)?$/;

// "1.5 MB", "1,5 MB", "١٫٥ م.ب." as the agent's language writes sizes.
const size = (n, unit, digits) =>
  number(n, { style: "unit", unit, unitDisplay: "short", maximumFractionDigits: digits });
export const sizeText = (bytes) => {
  if (bytes >= 1048576) return size(bytes / 1048576, "megabyte", 1);
  if (bytes >= 1024) return size(bytes / 1024, "kilobyte", 0);
  return size(bytes, "byte", 0);
};

/* A message's text for previews and announcements: its body (a system line or the bot's
   hand-off in the agent's language), else its file's name. */
export const messageText = (message) => {
  if (message.body || !message.attachment) return systemText(message) || "";
  return t("file_named", { name: message.attachment.name });
};

export const fileBlock = (file) => {
  const link = document.createElement("a");
  link.className = "file";
  if (FILE_URL.test(file.url)) link.href = file.url;
  link.setAttribute("download", file.name);
  if (file.thumbnail_url && FILE_URL.test(file.thumbnail_url)) {
    link.classList.add("file-image");
    link.setAttribute("aria-label", t("download", { name: file.name, size: sizeText(file.size) }));
    const img = document.createElement("img");
    img.className = "file-thumb";
    img.src = file.thumbnail_url;
    img.alt = file.name;
    link.appendChild(img);
    return link;
  }
  const icon = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  icon.setAttribute("viewBox", "0 0 24 24");
  icon.setAttribute("class", "file-icon");
  icon.setAttribute("aria-hidden", "true");
  const path = icon.appendChild(document.createElementNS(icon.namespaceURI, "path"));
  path.setAttribute("d", "M14 2H6a2 2 0 0 0-2 2v16a2 2 0 0 0 2 2h12a2 2 0 0 0 2-2V8zM14 2v6h6");
  const name = text(document.createElement("span"), file.name);
  name.className = "file-name";
  const size = text(document.createElement("span"), sizeText(file.size));
  size.className = "file-size";
  link.appendChild(icon);
  link.appendChild(name);
  link.appendChild(size);
  return link;
};
