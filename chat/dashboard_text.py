"""What the agent dashboard's script (static/agent/dashboard/*.js) says, in the agent's
language, by key: the dashboard page carries it as JSON (t() in dom.js). The script
writes no sentence of its own; numbers, sizes and durations it formats with Intl."""

from django.utils.translation import gettext as _
from django.utils.translation import ngettext, pgettext

from .languages import plural_forms, system_sentences


def dashboard_text() -> dict[str, str | dict[str, str]]:
    """By key; a text that depends on a count is its forms by plural category."""
    return {
        # conversation.js: system messages in the agent's language, by their code
        **system_sentences(),
        # sound.js: the sound toggle's state ("Sound on")
        "sound_on": pgettext("sound", "on"),
        "sound_off": pgettext("sound", "off"),
        # socket.js: the connection
        "sign_in": _("Sign in"),
        "connecting": _("Connecting…"),
        "reconnecting": _("Reconnecting…"),
        "connected": _("Connected"),
        "offline": _("Offline"),
        "signed_out": _("Signed out"),
        "offline_banner": _(
            "You are offline. Replies you write now are sent when the network is back."
        ),
        "lost_banner": _(
            "Connection lost. Trying again in %(seconds)s s. "
            "Replies you write now are sent when it is back."
        ),
        "session_ended": _("Your session ended. Sign in again to keep chatting."),
        # presence.js
        "switching_available": _("Switching to available…"),
        "switching_away": _("Switching to away…"),
        "taking_chats": _("You are taking new chats."),
        "away_idle": _(
            "Away while you were idle: no new chats. You are back as soon as you use this page."
        ),
        "away": _("Away: no new chats come to you."),
        # people.js, conversation.js, outbox.js: who wrote, receipts
        "visitor": _("Visitor"),
        "visitor_number": _("Visitor #%(id)s"),
        "you": _("You"),
        "former_agent": _("A former agent"),
        "an_agent": _("An agent"),
        # the knowledge-base bot's answers (kb/), with the articles they came from
        "bot": _("Bot · "),
        "bot_from": _("Bot, from %(articles)s · "),
        "joined": _("%(name)s joined the chat"),
        "typing": _("%(name)s is typing…"),
        "typing_peek": _("%(name)s is typing: %(draft)s"),
        "note": _("Note · only agents see this"),
        "note_by": _("Note by %(name)s · only agents see this"),
        "seen": _("Seen"),
        "sent": _("Sent"),
        "retry": _("Retry"),
        "sending": _("Sending…"),
        "waiting": _("Waiting for connection…"),
        "not_sent": _("Not sent."),
        "not_sent_because": _("Not sent: %(reason)s"),
        "no_answer": _("No answer from the server."),
        "rated": _("The visitor rated it %(score)s/5."),
        "rated_saying": _("The visitor rated it %(score)s/5: “%(comment)s”"),
        "new_message": _("New message from %(name)s: %(text)s"),
        # chat-list.js
        "ended": _("Ended"),
        "waiting_for": _("Waiting %(time)s"),
        "waiting_since": _("Waiting for a reply since %(time)s"),
        "reply_to": _("Reply to %(name)s"),
        "chat_number": _("Chat #%(id)s"),
        "started": _("started %(time)s"),
        "no_messages": _("No messages"),
        "loading": _("Loading…"),
        # chats.js: a chat's end
        "close_chat": _("Close chat"),
        "remove": _("Remove from list"),
        "chat_over": _("The chat is over."),
        "new_chat": _("New chat from %(name)s"),
        "closed": pgettext("chat", "Closed"),
        "closed_by_you": _("This chat was closed by you."),
        "closed_by_visitor": _("This chat was closed by the visitor."),
        "closed_by_system": _("This chat was closed by the system."),
        "visitor_closed": _("Chat with %(name)s was closed by the visitor."),
        "system_closed": _("Chat with %(name)s was closed by the system."),
        "transferred_to": _("Transferred to %(name)s"),
        "transferred_notice": _("This chat was transferred to %(name)s."),
        "requeued": _("Back to the queue"),
        "requeued_notice": _("This chat was moved back to the queue."),
        "requeued_lapsed": _(
            "This chat was moved back to the queue because your connection lapsed. "
            "Another agent may pick it up."
        ),
        "requeued_announce": _("Chat with %(name)s was moved back to the queue."),
        # transfer.js: the colleagues a chat may go to
        "transfer_option": _("%(name)s (%(why)s, %(load)s/%(capacity)s)"),
        "agent_available": pgettext("agent", "available"),
        "agent_away": pgettext("agent", "away"),
        "agent_full": pgettext("agent", "full"),
        "agent_offline": pgettext("agent", "offline"),
        "loading_agents": _("Loading agents…"),
        "transfer_offline": _(
            "Not connected: the chat can be transferred once the connection is back."
        ),
        # visitor-panel.js: the visitor sidebar
        "unknown": _("Unknown"),
        "not_reported": _("Not reported yet"),
        "direct": _("Direct, or not reported"),
        "user_id": _("User ID %(id)s"),
        "verified_user": _("Verified by the site: user ID %(id)s"),
        "no_earlier_chats": _("None: this is their first chat"),
        "earlier_chats": plural_forms(
            lambda n: ngettext("%(count)s earlier chat", "%(count)s earlier chats", n)
        ),
        "earlier_chat_of": _("Earlier chat of %(date)s (%(status)s)"),
        "status_queued": pgettext("conversation", "queued"),
        "status_active": pgettext("conversation", "active"),
        "status_closed": pgettext("conversation", "closed"),
        "status_bot": pgettext("conversation", "with the bot"),
        "agent": _("Agent"),
        "system": _("System"),
        # canned.js: canned responses
        "new_response": _("New response"),
        "edit_shortcut": _("Edit /%(shortcut)s"),
        "delete_shortcut": _("Delete /%(shortcut)s"),
        "save_changes": _("Save changes"),
        "add_response": _("Add response"),
        "delete_confirm": _("Delete the canned response /%(shortcut)s?"),
        "saved_shortcut": _("Saved /%(shortcut)s."),
        "canned_deleted": _("Canned response deleted."),
        "write_text": _("Write the text of the response."),
        "cannot_save": _("The server cannot save this right now; try again shortly."),
        "save_offline": _("Not connected: save again once the connection is back."),
        # queue-view.js
        "take_gone": _(
            "That chat is no longer waiting: another agent took it, or the visitor left."
        ),
        "take_forbidden": _(
            "This site does not let agents take chats from the queue; they are assigned in turn."
        ),
        "take_full": _(
            "You cannot take a chat right now: you are at your capacity, or your connection "
            "lapsed. Close a chat, or reconnect, and try again."
        ),
        "take_offline": _("Not connected: try again once the connection is back."),
        "queue_offline": _("Not connected: the queue shows once the connection is back."),
        "in_queue_since": _("In the queue since %(time)s"),
        "no_message_yet": _("No message yet"),
        "take": _("Take"),
        "take_chat_with": _("Take the chat with %(name)s"),
        "assigned_in_turn": _("Assigned in turn"),
        "taking": _("Taking…"),
        # frames.js: refusals the dashboard words itself
        "went_wrong": _("Something went wrong."),
        "slow_down": _("Slow down a little: the server is refusing frames."),
        "agent_unavailable": _(
            "That agent cannot take this chat right now. Pick someone else or the queue."
        ),
        "no_longer_yours_toast": _("That chat is no longer yours."),
        # resume.js, pane.js
        "no_longer_yours": _("No longer yours"),
        "no_longer_yours_notice": _(
            "This chat is no longer yours: it was closed or moved back to the queue while "
            "you were offline."
        ),
        "closing": _("Closing…"),
        "close_offline": _("Not connected: the chat can be closed once the connection is back."),
        # chat-list.js, channel.js, composer.js: the list and the reply box
        "typing_short": _("typing…"),
        "channel_chat": pgettext("channel", "Chat"),
        "channel_email": pgettext("channel", "Email"),
        "write_reply": _("Write a reply…"),
        "write_email_reply": _("Write a reply: it is sent by email…"),
        "write_note": _("Internal note: only agents see it…"),
        "note_offline": _("Not connected: the note can be saved once the connection is back."),
        "no_subject": _("(no subject)"),
        "email_from": _("from %(sender)s"),
        "unverified": _("unverified"),
        "unverified_title": _(
            "The mail server did not confirm (SPF/DKIM) that this address sent it."
        ),
        "reply_by_email": _("The reply is sent by email"),
        "inserted_shortcut": _("Inserted /%(shortcut)s."),
        # files.js, attachments.js: files in a chat, the agent's uploads
        "file_named": _("File: %(name)s"),
        "download": _("Download %(name)s, %(size)s"),
        "uploading": _("Uploading %(name)s…"),
        "http_error": _("error %(status)s"),
        "file_too_large": _('"%(name)s" is too large: the limit is %(limit)s.'),
        "file_type": _('"%(name)s" cannot be sent: images, PDF, text, Word and Excel files only.'),
        "file_mismatch": _('"%(name)s" cannot be sent: its name does not match what the file is.'),
        "file_chat_over": _('"%(name)s" was not sent: the chat is over.'),
        "file_rate": _('"%(name)s" was not sent: too many files. Please wait a moment.'),
        "file_failed": _('"%(name)s" was not sent: %(reason)s'),
        "file_connection": _('"%(name)s" was not sent: the connection failed.'),
        # assist.js: agent assist's suggestions (kb/assist/)
        "assist_group": _("Suggested replies"),
        "assist_article": pgettext("suggestion source", "Article"),
        "assist_canned": pgettext("suggestion source", "Canned"),
        "assist_past": _("Your earlier answer"),
        "assist_language": _("Visitor's language: %(name)s"),
        "assist_upset": _("Upset visitor"),
        "assist_upset_title": _("The visitor's recent messages read as upset"),
        "assist_inserted": _("Inserted suggestion %(n)s."),
        # calls.js: voice and video calls from a chat
        "call": _("Call"),
        "audio_call": _("Audio call"),
        "video_call": _("Video call"),
        "mute": _("Mute"),
        "unmute": _("Unmute"),
        "camera_off": _("Camera off"),
        "camera_on": _("Camera on"),
        "share_screen": _("Share screen"),
        "stop_sharing": _("Stop sharing"),
        "hang_up": _("Hang up"),
        "call_elsewhere": _("A call is going on in another tab."),
        "starting_camera": _("Starting the camera…"),
        "starting_microphone": _("Starting the microphone…"),
        "no_camera": _("No camera or microphone: %(reason)s"),
        "no_microphone": _("No microphone: %(reason)s"),
        "calling": _("Calling…"),
        "ringing": _("Ringing… waiting for the visitor to answer."),
        "in_audio_call": _("In an audio call with the visitor."),
        "in_video_call": _("In a video call with the visitor."),
        "call_failed": _("The call's connection failed."),
        "call_ended": _("Call ended."),
        "call_ended_after": _("Call ended after %(duration)s."),
        "call_declined": _("The visitor declined the call."),
        "call_timed_out": _("No answer: the call timed out."),
        "call_disconnected": _("The call was disconnected."),
        "call_in_progress": _("This chat already has a call."),
        "too_many_calls": _("Too many calls in this chat: try again in a minute."),
        "cannot_call": _("This chat cannot be called right now."),
    }
