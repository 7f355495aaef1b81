"""Attachments: what an uploaded file really is (judged by its content, never by its name
or the browser's Content-Type), its thumbnail, storing it through Django's storage API,
and removing files from storage when their rows go.

An upload is stored "pending" (no message); `sending.post_message` links it to the
message that names it. Pending uploads nobody sent are deleted by the sweep. Whenever an
Attachment row is deleted (sweep, retention purge, erasure, the admin, a cascade from its
conversation, site or visitor), its files are deleted from storage once that commits.
"""

import io
import logging
import unicodedata
import zipfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import PurePosixPath

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import Storage
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver
from django.utils import timezone
from django.utils.formats import number_format
from django.utils.translation import gettext as _
from PIL import Image, ImageOps

from .models import Attachment, Conversation

logger = logging.getLogger(__name__)

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
# What may be attached: detected content type -> the file name endings that agree with it.
ALLOWED_TYPES: dict[str, tuple[str, ...]] = {
    "image/png": (".png",),
    "image/jpeg": (".jpg", ".jpeg"),
    "image/gif": (".gif",),
    "image/webp": (".webp",),
    "application/pdf": (".pdf",),
    "text/plain": (".txt", ".log"),
    DOCX: (".docx",),
    XLSX: (".xlsx",),
}
# For the file pickers' `accept` attribute (a hint only; the server decides).
ACCEPT = ",".join(ext for exts in ALLOWED_TYPES.values() for ext in exts)

# Pillow decodes only these formats here: an image claiming another format (EPS would
# run Ghostscript, for one) is never handed to its decoder.
IMAGE_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "WEBP": "image/webp"}
IMAGE_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
)
# A decompression bomb is small on disk and huge in memory: refuse images past this
# many pixels before decoding them (Pillow's own guard only warns below 2x its limit).
MAX_IMAGE_PIXELS = 40_000_000
THUMBNAIL_SIZE = 320
THUMBNAIL_CONTENT_TYPE = "image/jpeg"
# [Content_Types].xml of a real document is a few KB; read no more of it than this.
MAX_CONTENT_TYPES_BYTES = 256 * 1024
MAX_NAME_CHARS = 255
PENDING_BATCH = 200


class Refused(Exception):
    """An upload the server will not store; `status` and `code` are the HTTP answer."""

    def __init__(self, status: int, code: str, detail: str):
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class Inspected:
    content_type: str
    thumbnail: bytes | None = None


def describe_limit(max_bytes: int) -> str:
    """ "10 MB", "1.5 MB" ("1,5 MB" in German)."""
    megabytes = round(max_bytes / (1024 * 1024), 1)
    return f"{number_format(int(megabytes) if megabytes.is_integer() else megabytes)} MB"


def clean_name(raw: str) -> str:
    """The name shown and offered for download: no folders, no control or bidi
    characters (a right-to-left override can dress `invoice.exe` up as `exe.pdf`),
    at most 255 characters with the extension kept."""
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip().strip(".")
    if not name:
        name = "file"
    if len(name) > MAX_NAME_CHARS:
        suffix = PurePosixPath(name).suffix[:20]
        name = name[: MAX_NAME_CHARS - len(suffix)] + suffix
    return name


def inspect(upload: UploadedFile, name: str) -> Inspected:
    """The upload's type by its content (and a thumbnail for images), if it is one the
    allowlist takes and the name's extension agrees; else `Refused`."""
    upload.seek(0)
    head = upload.read(16)
    upload.seek(0)
    if not head:
        raise Refused(400, "bad_request", _("The file is empty."))
    inspected = _inspect_content(upload, head)
    if inspected is None:
        raise Refused(415, "unsupported_type", _("This kind of file cannot be attached."))
    extension = PurePosixPath(name).suffix.lower()
    if extension not in ALLOWED_TYPES[inspected.content_type]:
        expected = _(" or ").join(ALLOWED_TYPES[inspected.content_type])
        raise Refused(
            415,
            "type_mismatch",
            _("The file's content is %(type)s, but its name does not end in %(expected)s.")
            % {"type": inspected.content_type, "expected": expected},
        )
    return inspected


def _inspect_content(upload: UploadedFile, head: bytes) -> Inspected | None:
    for signature, image_format in IMAGE_SIGNATURES:
        if head.startswith(signature):
            return _inspect_image(upload, image_format)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return _inspect_image(upload, "WEBP")
    if head.startswith(b"%PDF-"):
        return Inspected("application/pdf")
    if head.startswith(b"PK\x03\x04"):
        return _inspect_office(upload)
    if _is_text(upload):
        return Inspected("text/plain")
    return None


def _inspect_image(upload: UploadedFile, image_format: str) -> Inspected:
    """A real image of the format its signature claims: fully decoded (into the
    thumbnail) before it is accepted, so a truncated or doctored file is refused."""
    try:
        with Image.open(upload, formats=[image_format]) as image:
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise Refused(
                    413,
                    "too_large",
                    _("The image is over %(limit)s megapixels.")
                    % {"limit": MAX_IMAGE_PIXELS // 1_000_000},
                )
            image.verify()
        upload.seek(0)
        thumbnail = _thumbnail(upload, image_format)
    except Refused:
        raise
    except Exception as exc:
        # Pillow's decoders raise many kinds of exception (OSError, SyntaxError,
        # ValueError, struct.error, DecompressionBombError...) for malformed input; each
        # means the same here: not an image we accept.
        logger.info("upload refused: unreadable %s image: %r", image_format, exc)
        raise Refused(
            415, "unsupported_type", _("The file looks like an image but cannot be read.")
        ) from None
    finally:
        upload.seek(0)
    return Inspected(IMAGE_FORMATS[image_format], thumbnail)


def _thumbnail(upload: UploadedFile, image_format: str) -> bytes:
    """A JPEG of at most THUMBNAIL_SIZE px a side, upright (EXIF orientation), on white
    where the image was transparent. It is re-encoded by us, so it is safe to show
    inline; the original is only ever downloaded."""
    with Image.open(upload, formats=[image_format]) as image:
        if image_format == "JPEG":
            # Decode at a reduced scale: a 40-megapixel photo costs a fraction of its size.
            image.draft("RGB", (THUMBNAIL_SIZE * 2, THUMBNAIL_SIZE * 2))
        image.load()
        preview = ImageOps.exif_transpose(image)
        preview.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
        if preview.mode in ("RGBA", "LA", "PA", "P"):
            rgba = preview.convert("RGBA")
            flat = Image.new("RGB", rgba.size, "white")
            flat.paste(rgba, mask=rgba.getchannel("A"))
            preview = flat
        elif preview.mode != "RGB":
            preview = preview.convert("RGB")
        out = io.BytesIO()
        preview.save(out, "JPEG", quality=82, optimize=True)
    return out.getvalue()


def _inspect_office(upload: UploadedFile) -> Inspected | None:
    """A Word or Excel document (Office Open XML) without macros: a zip whose
    [Content_Types].xml declares the main part and which holds that part."""
    try:
        with zipfile.ZipFile(upload) as archive:
            names = set(archive.namelist())
            if "[Content_Types].xml" not in names:
                return None
            if any(n.lower().endswith("vbaproject.bin") for n in names):
                return None
            with archive.open("[Content_Types].xml") as part:
                declared = part.read(MAX_CONTENT_TYPES_BYTES)
    except Exception as exc:
        # BadZipFile, encrypted entries (RuntimeError), unsupported compression
        # (NotImplementedError), truncated data (EOFError, OSError): not a document.
        logger.info("upload refused: unreadable zip: %r", exc)
        return None
    finally:
        upload.seek(0)
    if b"macroEnabled" in declared:
        return None
    if b"wordprocessingml.document.main+xml" in declared and "word/document.xml" in names:
        return Inspected(DOCX)
    if b"spreadsheetml.sheet.main+xml" in declared and "xl/workbook.xml" in names:
        return Inspected(XLSX)
    return None


def _is_text(upload: UploadedFile) -> bool:
    """UTF-8 text without NUL bytes (the upload is at most the size limit)."""
    data = upload.read()
    upload.seek(0)
    if b"\x00" in data:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# --- storing and removing ---------------------------------------------------------


def store(
    *,
    conversation: Conversation,
    uploaded_by: str,
    agent_id: int | None,
    upload: UploadedFile,
    max_bytes: int,
) -> Attachment:
    """Check an upload and store it, pending, in `conversation`; `Refused` otherwise.

    The files are written before the row: a failure after writing them removes them
    again, so nothing is left in storage that no row names (a worker killed exactly in
    between does leave one; see docs/security.md)."""
    if upload.size > max_bytes:
        raise Refused(
            413,
            "too_large",
            _("The file is over %(limit)s.") % {"limit": describe_limit(max_bytes)},
        )
    name = clean_name(upload.name or "")
    inspected = inspect(upload, name)
    attachment = Attachment(
        conversation=conversation,
        uploaded_by=uploaded_by,
        uploaded_by_agent_id=agent_id,
        name=name,
        content_type=inspected.content_type,
        size=upload.size,
    )
    try:
        # upload_to gives each file a random storage name; `name` is only a label.
        attachment.file.save(name, upload, save=False)
        if inspected.thumbnail is not None:
            attachment.thumbnail.save(name, ContentFile(inspected.thumbnail), save=False)
        attachment.save()
    except BaseException:
        remove_from_storage(
            attachment.file.storage, [attachment.file.name, attachment.thumbnail.name]
        )
        raise
    logger.info(
        "attachment %s stored in conversation %s (%s, %d B)",
        attachment.pk,
        conversation.pk,
        attachment.content_type,
        attachment.size,
    )
    return attachment


def delete_stale_pending(*, now: datetime | None = None) -> int:
    """Delete uploads that no message named within SUPPORTDESK_ATTACHMENT_PENDING_TTL
    (their files go once this commits). Safe on every worker at once."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.SUPPORTDESK_ATTACHMENT_PENDING_TTL)
    deleted = 0
    while True:
        with transaction.atomic():
            # Race: a message may name the upload while the sweep deletes it. Both lock
            # the attachment row (conversations.messages._claim_attachment): the sweep skips a row a
            # sender holds, and a sender that waited for the sweep finds no row
            # (`not_found`) instead of a message pointing at a deleted file.
            stale = list(
                Attachment.objects.select_for_update(skip_locked=True)
                .filter(message__isnull=True, created_at__lt=cutoff)
                .values_list("pk", flat=True)[:PENDING_BATCH]
            )
            if stale:
                deleted += Attachment.objects.filter(pk__in=stale, message__isnull=True).delete()[0]
        if len(stale) < PENDING_BATCH:
            break
    if deleted:
        logger.info("deleted %d pending attachments nobody sent", deleted)
    return deleted


def remove_from_storage(storage: Storage, names: list[str]) -> None:
    for name in names:
        if not name:
            continue
        try:
            storage.delete(name)
        except OSError as exc:
            logger.warning("could not delete attachment file %s: %s", name, exc)


@receiver(post_delete, sender=Attachment, dispatch_uid="chat.attachments.delete_files")
def _delete_files_with_the_row(sender, instance: Attachment, using: str, **kwargs) -> None:
    # After the commit: a deletion that rolls back must not have taken the files.
    names = [instance.file.name, instance.thumbnail.name]
    storage = instance.file.storage
    transaction.on_commit(lambda: remove_from_storage(storage, names), using=using)
