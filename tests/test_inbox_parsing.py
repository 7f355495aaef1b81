"""Reading inbound mail (inbox/parsing.py) and the signed reply addresses and
Message-IDs a reply finds its conversation by (chat/reply_address.py)."""

from email.message import EmailMessage

from chat import reply_address
from inbox import parsing


def mail(body="Where is my order?", *, html=None, **headers) -> bytes:
    message = EmailMessage()
    message["From"] = headers.pop("From", "Ann Visitor <Ann@Example.com>")
    message["To"] = headers.pop("To", "support@acme.example")
    message["Subject"] = headers.pop("Subject", "Order 1234")
    message["Message-ID"] = headers.pop("Message_ID", "<first@example.com>")
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    if body is not None:
        message.set_content(body)
    if html is not None:
        if body is None:
            message.set_content(html, subtype="html")
        else:
            message.add_alternative(html, subtype="html")
    return bytes(message)


def test_a_plain_mail_gives_its_sender_subject_and_text():
    parsed = parsing.parse_bytes(mail(), envelope_sender="ann@example.com")
    assert parsed.sender == "ann@example.com"
    assert parsed.sender_name == "Ann Visitor"
    assert parsed.from_header == "Ann Visitor <ann@example.com>"
    assert parsed.subject == "Order 1234"
    assert parsed.message_id == "<first@example.com>"
    assert parsed.text == "Where is my order?"
    assert parsed.automatic == ""
    assert parsed.sender_verified is False


def test_an_html_only_mail_becomes_text_without_its_quoted_blockquote():
    html = (
        "<html><head><style>p{}</style></head><body><p>Thanks, that &amp; more!</p>"
        "<div>Second line</div><blockquote>old quoted text</blockquote></body></html>"
    )
    parsed = parsing.parse_bytes(mail(None, html=html))
    assert parsed.text == "Thanks, that & more!\n\nSecond line"


def test_the_quoted_history_and_signature_of_a_reply_are_cut():
    body = (
        "Yes, the blue one please.\n\n"
        "On Mon, 7 Dec 2026 at 10:00, Acme <support@acme.example>\nwrote:\n"
        "> Which colour?\n> \n"
    )
    assert parsing.parse_bytes(mail(body)).text == "Yes, the blue one please."
    signed = "Thanks!\n-- \nAnn\nSent from my phone\n"
    assert parsing.parse_bytes(mail(signed)).text == "Thanks!"
    outlook = "Fine.\n\n-----Original Message-----\nFrom: Acme\nSent: today\n"
    assert parsing.parse_bytes(mail(outlook)).text == "Fine."
    only_quotes = "> all of it quoted\n"
    assert parsing.parse_bytes(mail(only_quotes)).text == "> all of it quoted"


def test_threading_headers_are_read_as_message_ids():
    parsed = parsing.parse_bytes(
        mail(In_Reply_To="<b@x>", References="<a@x> <b@x>", Message_ID="<c@x>")
    )
    assert parsed.in_reply_to == ["<b@x>"]
    assert parsed.references == ["<a@x>", "<b@x>"]


def test_auto_replies_bounces_and_lists_are_automatic():
    cases = [
        ({"Auto_Submitted": "auto-replied"}, None, "Auto-Submitted"),
        ({"Precedence": "bulk"}, None, "Precedence"),
        ({"Precedence": "junk"}, None, "Precedence"),
        ({"Precedence": "list"}, None, "Precedence"),
        ({"List_Id": "<news.example.com>"}, None, "mailing list"),
        ({"X_Autoreply": "yes"}, None, "X-Autoreply"),
        ({}, "", "bounce"),
        ({"From": "MAILER-DAEMON@mx.example.com"}, None, "machine sender"),
    ]
    for headers, envelope_sender, reason in cases:
        parsed = parsing.parse_bytes(mail(**headers), envelope_sender=envelope_sender)
        assert reason in parsed.automatic, headers
    assert parsing.parse_bytes(mail(Auto_Submitted="no")).automatic == ""


def test_a_delivery_status_notification_is_automatic():
    report = EmailMessage()
    report["From"] = "postmaster@mx.example.com"
    report["To"] = "support@acme.example"
    report.set_content("Delivery failed")
    report.make_mixed()
    report.replace_header("Content-Type", 'multipart/report; report-type="delivery-status"')
    parsed = parsing.parse_bytes(bytes(report), envelope_sender="postmaster@mx.example.com")
    assert parsed.automatic


def test_the_sender_is_verified_only_by_the_topmost_authentication_results():
    passed = "mx.acme.example; spf=pass smtp.mailfrom=example.com; dkim=pass header.d=example.com"
    assert parsing.parse_bytes(mail(Authentication_Results=passed)).sender_verified
    dkim_other_domain = "mx.acme.example; dkim=pass header.d=evil.example; spf=fail"
    assert not parsing.parse_bytes(mail(Authentication_Results=dkim_other_domain)).sender_verified
    # The sender wrote its own "pass" below the server's "fail": the server's counts.
    message = EmailMessage()
    message["Authentication-Results"] = "mx.acme.example; spf=fail smtp.mailfrom=example.com"
    message["Authentication-Results"] = "forged; dkim=pass header.d=example.com"
    message["From"] = "ann@example.com"
    message.set_content("hi")
    assert not parsing.parse_bytes(bytes(message)).sender_verified
    # Naming the upstream's authserv-id picks its header wherever it is.
    assert parsing.parse_bytes(
        bytes(message), authserv_id="forged"
    ).sender_verified  # (only as trusted as the operator's setting says)


def test_a_mail_without_a_sender_is_unreadable():
    message = EmailMessage()
    message["To"] = "support@acme.example"
    message.set_content("who am I")
    try:
        parsing.parse_bytes(bytes(message))
    except parsing.Unreadable as exc:
        assert "sender" in str(exc)
    else:
        raise AssertionError("a mail without From was read")


def test_attachments_are_collected_with_their_names():
    message = EmailMessage()
    message["From"] = "ann@example.com"
    message.set_content("see attached")
    message.add_attachment(b"hello file\n", maintype="text", subtype="plain", filename="a.txt")
    message.add_attachment(b"%PDF-1.4 x", maintype="application", subtype="pdf", filename="b.pdf")
    parsed = parsing.parse_bytes(bytes(message))
    assert parsed.text == "see attached"
    assert [(a.name, a.content) for a in parsed.attachments] == [
        ("a.txt", b"hello file\n"),
        ("b.pdf", b"%PDF-1.4 x"),
    ]


def test_a_body_over_the_message_limit_is_cut_with_a_note():
    parsed = parsing.parse_bytes(mail("x" * 20_000))
    body = parsing.message_body(parsed)
    assert len(body) == 10_000
    assert body.endswith("[…the rest of this mail was cut]")


def test_reply_addresses_and_message_ids_name_their_conversation_only_when_signed():
    address = reply_address.reply_address("support@acme.example", 42)
    assert address.startswith("support+c42-") and address.endswith("@acme.example")
    assert reply_address.conversation_from_address(address) == 42
    assert reply_address.conversation_from_address(address.upper()) == 42
    forged = address.replace("c42-", "c43-")
    assert reply_address.conversation_from_address(forged) is None
    assert reply_address.conversation_from_address("support@acme.example") is None
    assert reply_address.base_address(address) == "support@acme.example"

    first = reply_address.message_id(7, domain="acme.example")
    second = reply_address.message_id(7, domain="acme.example")
    assert first != second
    assert reply_address.conversation_from_message_ids([f"<x@y> {first}"]) == 7
    assert reply_address.conversation_from_message_ids([first.replace("<c7.", "<c8.")]) is None
    assert reply_address.conversation_from_message_ids(["<c7.abc.0000000000000000@x>"]) is None
