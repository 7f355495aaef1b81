/* supportdesk agent dashboard.
 *
 * One WebSocket to /ws/agent/ (same origin, session cookie), the wire contract of
 * docs/protocol.md, plain DOM. Every piece of text from the network goes into the page
 * through textContent; the only elements made from message text are <a> for http(s)
 * URLs, whose href is checked with the URL parser first.
 *
 * Messages are kept per chat by seq: a seq already held is never drawn twice, and a
 * hole in the seqs is filled with `sync`, so a dropped socket or a missed broadcast
 * costs nothing but a round trip.
 */
(function () {
  "use strict";

  var PING_EVERY_MS = 25000;
  var PONG_TIMEOUT_MS = 10000; // no pong by then: the socket is dead, reconnect
  var ACK_TIMEOUT_MS = 10000;
  var TYPING_REPEAT_MS = 3000; // resend typing:true at most this often while typing
  var TYPING_IDLE_MS = 4000; // typing:false after this long without a keystroke
  var VISITOR_TYPING_TTL_MS = 8000; // hide the visitor's indicator if they go quiet
  var WAIT_TICK_MS = 5000;
  var BACKOFF_BASE_MS = 500;
  var BACKOFF_MAX_MS = 30000;
  var TITLE = "supportdesk";
  var NOTIFY_ASKED_KEY = "supportdesk.notifications-asked";

  var root = document.getElementById("inbox");
  if (!root) return;

  var els = {
    list: document.getElementById("chat-list"),
    listEmpty: document.getElementById("list-empty"),
    panes: document.getElementById("panes"),
    emptyPane: document.getElementById("empty-pane"),
    banner: document.getElementById("offline-banner"),
    queue: document.getElementById("queue-length"),
    load: document.getElementById("load"),
    capacity: document.getElementById("capacity"),
    agentName: document.getElementById("agent-name"),
    agentInitial: document.getElementById("agent-initial"),
    connection: document.getElementById("connection"),
    connectionText: document.getElementById("connection-text"),
    presence: document.getElementById("presence"),
    presenceNote: document.getElementById("presence-note"),
    notify: document.getElementById("notify"),
    toast: document.getElementById("toast"),
    announcer: document.getElementById("announcer"),
    itemTemplate: document.getElementById("chat-item-template"),
    paneTemplate: document.getElementById("pane-template"),
  };

  var state = {
    status: root.dataset.status || "away",
    presenceWanted: null,
    autoAway: false, // away because idle (server's `auto`), not by choice
    capacity: Number(root.dataset.capacity) || 0,
    queueLength: null,
    chats: new Map(), // conversation id -> chat
    selected: null, // conversation id
    socket: null,
    connected: false, // `ready` received on the current socket
    attempt: 0,
    reconnectTimer: null,
    pingTimer: null,
    pongTimer: null,
    signedOut: false,
    toastTimer: null,
  };

  // --- small helpers ------------------------------------------------------------

  function text(el, value) {
    el.textContent = value;
    return el;
  }

  function part(parent, selector) {
    return parent.querySelector(selector);
  }

  function newClientMsgId() {
    if (window.crypto && typeof window.crypto.randomUUID === "function") {
      return window.crypto.randomUUID();
    }
    // randomUUID needs a secure context; getRandomValues does not.
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return Array.prototype.map
      .call(bytes, function (b) {
        return b.toString(16).padStart(2, "0");
      })
      .join("");
  }

  function clockTime(iso) {
    var date = iso ? new Date(iso) : new Date();
    if (isNaN(date.getTime())) return "";
    return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function duration(ms) {
    var s = Math.max(0, Math.floor(ms / 1000));
    if (s < 60) return s + "s";
    var m = Math.floor(s / 60);
    if (m < 60) return m + "m";
    var h = Math.floor(m / 60);
    return h + "h " + (m % 60) + "m";
  }

  function pageAttentive() {
    return document.visibilityState === "visible" && document.hasFocus();
  }

  var URL_PATTERN = /\bhttps?:\/\/[^\s<>"'`]+/gi;
  var TRAILING_PUNCTUATION = /[.,;:!?)\]}'"]+$/;

  /* Fill `parent` with `body` as text nodes, turning http(s) URLs into links.
     Anything else (javascript:, data:, markup) stays literal text. */
  function renderBody(parent, body) {
    var last = 0;
    var match;
    URL_PATTERN.lastIndex = 0;
    while ((match = URL_PATTERN.exec(body)) !== null) {
      var raw = match[0].replace(TRAILING_PUNCTUATION, "");
      var href = safeHref(raw);
      if (!href) continue;
      if (match.index > last) {
        parent.appendChild(document.createTextNode(body.slice(last, match.index)));
      }
      var a = document.createElement("a");
      a.href = href;
      a.target = "_blank";
      a.rel = "noopener noreferrer nofollow";
      a.textContent = raw;
      parent.appendChild(a);
      last = match.index + raw.length;
      URL_PATTERN.lastIndex = last;
    }
    if (last < body.length) parent.appendChild(document.createTextNode(body.slice(last)));
  }

  function safeHref(raw) {
    try {
      var url = new URL(raw);
      return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
    } catch (err) {
      return null;
    }
  }

  function announce(message) {
    // Re-setting the same text would not be announced again; clear first.
    els.announcer.textContent = "";
    window.setTimeout(function () {
      els.announcer.textContent = message;
    }, 50);
  }

  function toast(message) {
    text(els.toast, message);
    els.toast.hidden = false;
    window.clearTimeout(state.toastTimer);
    state.toastTimer = window.setTimeout(function () {
      els.toast.hidden = true;
    }, 6000);
  }

  // --- the socket ---------------------------------------------------------------

  function socketUrl() {
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    return scheme + window.location.host + (root.dataset.socketPath || "/ws/agent/");
  }

  function connect() {
    window.clearTimeout(state.reconnectTimer);
    state.reconnectTimer = null;
    showConnection("connecting", state.attempt ? "Reconnecting…" : "Connecting…");
    var socket;
    try {
      socket = new WebSocket(socketUrl());
    } catch (err) {
      scheduleReconnect();
      return;
    }
    state.socket = socket;
    socket.addEventListener("message", function (event) {
      if (socket !== state.socket) return;
      // Anything from the server proves the socket alive.
      window.clearTimeout(state.pongTimer);
      var frame;
      try {
        frame = JSON.parse(event.data);
      } catch (err) {
        return;
      }
      if (frame && typeof frame.type === "string") handleFrame(frame);
    });
    socket.addEventListener("close", function (event) {
      if (socket !== state.socket) return;
      onSocketClosed(event.code);
    });
  }

  function send(frame) {
    var socket = state.socket;
    if (!socket || socket.readyState !== WebSocket.OPEN || !state.connected) return false;
    socket.send(JSON.stringify(frame));
    return true;
  }

  /* Give up on the current socket now (network gone, or no pong): a half-open TCP
     connection can look open for minutes. Its late close event is ignored. */
  function dropSocket() {
    var socket = state.socket;
    if (!socket) return;
    state.socket = null;
    try {
      socket.close();
    } catch (err) {
      /* already closing */
    }
    onSocketClosed(1006);
  }

  function ping() {
    // The server judges auto-away from how long the agent has not touched any tab.
    if (!send({ type: "ping", idle_seconds: idleSeconds() })) return;
    window.clearTimeout(state.pongTimer);
    state.pongTimer = window.setTimeout(dropSocket, PONG_TIMEOUT_MS);
  }

  function onSocketClosed(code) {
    state.socket = null;
    state.connected = false;
    window.clearInterval(state.pingTimer);
    window.clearTimeout(state.pongTimer);
    state.chats.forEach(function (chat) {
      chat.syncing = false;
      chat.pending.forEach(function (pending) {
        window.clearTimeout(pending.timer);
        // Unacknowledged sends go again after `ready`, with the same client_msg_id.
        if (pending.state === "sending") setPendingState(chat, pending, "sending");
      });
    });
    updatePresenceControls();
    if (code === 4401) {
      state.signedOut = true;
      showConnection("offline", "Signed out");
      showBanner("Your session ended. Sign in again to keep chatting.", true);
      return;
    }
    scheduleReconnect();
  }

  function scheduleReconnect() {
    // Exponential backoff with jitter, so a restarted server is not hit by every
    // dashboard at the same instant.
    var ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * Math.pow(2, state.attempt));
    var delay = Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
    state.attempt += 1;
    var seconds = Math.max(1, Math.round(delay / 1000));
    if (navigator.onLine === false) {
      showConnection("offline", "Offline");
      showBanner(
        "You are offline. Replies you write now are sent when the network is back.",
        false,
      );
    } else {
      showConnection("offline", "Reconnecting…");
      showBanner(
        "Connection lost. Trying again in " +
          seconds +
          "s. Replies you write now are sent when it is back.",
        false,
      );
    }
    state.reconnectTimer = window.setTimeout(connect, delay);
  }

  function showConnection(kind, label) {
    els.connection.dataset.state = kind;
    text(els.connectionText, label);
  }

  function showBanner(message, withLogin) {
    els.banner.textContent = message;
    if (withLogin) {
      var link = document.createElement("a");
      link.href = "/accounts/login/?next=/agent/";
      link.textContent = "Sign in";
      els.banner.appendChild(document.createTextNode(" "));
      els.banner.appendChild(link);
    }
    els.banner.hidden = false;
  }

  function retryNow() {
    if (state.socket || state.signedOut) return;
    state.attempt = 0;
    connect();
  }

  window.addEventListener("online", retryNow);
  window.addEventListener("offline", dropSocket);

  // --- frames -------------------------------------------------------------------

  var handlers = {
    ready: onReady,
    presence: onPresence,
    queue: function (frame) {
      setQueueLength(frame.queue_length);
    },
    "conversation.assigned": onAssigned,
    message: onMessage,
    "message.ack": onAck,
    note: function (frame) {
      var chat = state.chats.get(frame.conversation);
      if (chat) addNotes(chat, [frame]);
    },
    "note.ack": function () {},
    agents: onAgents,
    canned: onCanned,
    "canned.saved": onCannedSaved,
    "canned.deleted": onCannedDeleted,
    "conversation.rated": function (frame) {
      var chat = state.chats.get(frame.conversation);
      if (!chat || chat.status === "active") return;
      var said = frame.comment ? ": “" + frame.comment + "”" : ".";
      text(chat.pane.notice, chat.pane.notice.textContent + " The visitor rated it " + frame.score + "/5" + said);
    },
    "conversation.transferred": onTransferred,
    "visitor.context": onVisitorContext,
    "visitor.profile": onVisitorProfile,
    "conversation.history": onConversationHistory,
    sync: onSync,
    typing: onTyping,
    read: onRead,
    "conversation.closed": onClosed,
    "conversation.requeued": onRequeued,
    error: onError,
    pong: function () {},
  };

  function handleFrame(frame) {
    var handler = handlers[frame.type];
    if (handler) handler(frame);
  }

  function onReady(frame) {
    state.connected = true;
    state.attempt = 0;
    showConnection("online", "Connected");
    els.banner.hidden = true;
    window.clearInterval(state.pingTimer);
    state.pingTimer = window.setInterval(ping, PING_EVERY_MS);

    var agent = frame.agent || {};
    if (agent.display_name) {
      text(els.agentName, agent.display_name);
      text(els.agentInitial, agent.display_name.slice(0, 1).toUpperCase());
    }
    if (typeof agent.capacity === "number") state.capacity = agent.capacity;
    if (agent.status) state.status = agent.status;
    state.autoAway = agent.auto_away === true && state.status === "away";
    state.presenceWanted = null;
    updatePresenceControls();
    setQueueLength(frame.queue_length);
    // Canned responses may have changed while this socket was down; a change cut off
    // by the reconnect got no answer, and the fresh list shows whether it took effect.
    canned.awaiting = null;
    canned.save.disabled = false;
    send({ type: "canned.list" });

    var listed = new Set();
    (frame.conversations || []).forEach(function (data) {
      listed.add(data.id);
      var chat = state.chats.get(data.id);
      var isNew = !chat;
      chat = upsertChat(data);
      // The server's count is the truth after a reconnect; sync only adds messages.
      chat.unread = Number(data.unread) || 0;
      chat.countedThrough = Number(data.last_seq) || 0;
      if (isNew) chat.readSeq = Number(data.read_seq) || 0;
      if (chat.status === "active") {
        // A close that was cut off by the reconnect did not happen.
        chat.pane.close.disabled = false;
        text(chat.pane.close, "Close chat");
      }
      requestSync(chat, contiguousSeq(chat));
      resendPending(chat);
      updateItem(chat);
    });
    state.chats.forEach(function (chat) {
      if (!listed.has(chat.id) && chat.status === "active") {
        endChat(
          chat,
          "ended",
          "This chat is no longer yours: it was closed or moved back to the queue while you were offline.",
        );
      }
    });
    refreshCounts();
  }

  function onPresence(frame) {
    state.status = frame.status;
    // `auto`: the server changed it for idleness; any choice ends an automatic away.
    state.autoAway = frame.auto === true && frame.status === "away";
    if (state.presenceWanted === frame.status) state.presenceWanted = null;
    updatePresenceControls();
  }

  function onAssigned(frame) {
    var data = frame.conversation || {};
    if (typeof data.id !== "number") return;
    var known = state.chats.get(data.id);
    var reopened = known && known.status !== "active";
    var chat = upsertChat(data);
    if (!known || reopened) {
      chat.unread = Number(data.unread) || 0;
      chat.countedThrough = Number(data.last_seq) || 0;
      chat.readSeq = Number(data.read_seq) || 0;
    }
    if (Array.isArray(data.messages)) {
      addMessages(chat, data.messages, false);
      addNotes(chat, data.notes);
      chat.historyLoaded = true;
      checkGaps(chat);
    } else {
      requestSync(chat, contiguousSeq(chat));
    }
    updateItem(chat);
    refreshCounts();
    if (!known || reopened) {
      var who = visitorName(chat);
      announce("New chat from " + who + ".");
      notifyDesktop("New chat from " + who, lastPreview(chat), chat);
    }
    markRead(chat);
  }

  function onMessage(frame) {
    var chat = state.chats.get(frame.conversation);
    if (!chat) return;
    var added = addMessages(chat, [frame], true);
    if (!added) return;
    if (frame.sender === "visitor") {
      setVisitorTyping(chat, false);
      var watching = state.selected === chat.id && pageAttentive();
      // The socket joins its groups before the server counts `unread` for `ready`, so
      // a message may be in that count and arrive as a frame too: count it once.
      var counted = frame.seq <= chat.countedThrough;
      chat.countedThrough = Math.max(chat.countedThrough, frame.seq);
      if (!watching && !counted) {
        chat.unread += 1;
        if (state.selected !== chat.id) {
          announce("New message from " + visitorName(chat) + ": " + messageText(frame).slice(0, 140));
        }
        notifyDesktop(visitorName(chat), messageText(frame), chat);
      }
    }
    checkGaps(chat);
    updateItem(chat);
    refreshCounts();
    markRead(chat);
  }

  function onAck(frame) {
    var chat = state.chats.get(frame.conversation);
    if (!chat) return;
    var pending = chat.pending.get(frame.client_msg_id);
    if (!pending) return; // a duplicate ack for a retry already confirmed
    settlePending(chat, pending);
    addMessages(
      chat,
      [
        {
          conversation: chat.id,
          seq: frame.seq,
          sender: "agent",
          body: pending.body,
          attachment: pending.attachment,
          client_msg_id: pending.id,
          sent_at: new Date().toISOString(),
        },
      ],
      true,
    );
    // Answering means having read everything before the answer (the server agrees).
    chat.readSeq = Math.max(chat.readSeq, frame.seq);
    chat.unread = 0;
    checkGaps(chat);
    updateItem(chat);
    refreshCounts();
  }

  function onSync(frame) {
    var chat = state.chats.get(frame.conversation);
    if (!chat) return;
    chat.syncing = false;
    addMessages(chat, frame.messages || [], false);
    addNotes(chat, frame.notes);
    chat.historyLoaded = true;
    checkGaps(chat);
    updateItem(chat);
    refreshCounts();
    markRead(chat);
  }

  function onTyping(frame) {
    var chat = state.chats.get(frame.conversation);
    if (!chat || frame.from !== "visitor") return;
    // Sneak peek (when the site allows it): the visitor's unsent draft.
    setVisitorTyping(chat, frame.active === true, typeof frame.text === "string" ? frame.text : null);
  }

  function onRead(frame) {
    var chat = state.chats.get(frame.conversation);
    if (!chat || typeof frame.seq !== "number") return;
    if (frame.by === "visitor") {
      if (frame.seq > chat.visitorReadSeq) {
        chat.visitorReadSeq = frame.seq;
        updateReceipt(chat);
      }
    } else if (frame.by === "agent") {
      // Read in another tab of mine.
      if (frame.seq > chat.readSeq) {
        chat.readSeq = frame.seq;
        chat.unread = countVisitorMessagesAfter(chat, frame.seq);
        updateItem(chat);
        refreshCounts();
      }
    }
  }

  function onClosed(frame) {
    var chat = state.chats.get(frame.conversation);
    if (!chat) return;
    var by =
      frame.by === "agent" ? "you" : frame.by === "visitor" ? "the visitor" : "the system";
    endChat(chat, "closed", "This chat was closed by " + by + ".");
    if (frame.by !== "agent") announce("Chat with " + visitorName(chat) + " was closed by " + by + ".");
  }

  /* Fills every open transfer panel with the colleagues who could take a chat. */
  function onAgents(frame) {
    state.chats.forEach(function (chat) {
      if (chat.pane.transferPanel.hidden) return;
      var select = chat.pane.transferSelect;
      select.textContent = "";
      var queue = document.createElement("option");
      queue.value = "";
      text(queue, "Back to the queue");
      select.appendChild(queue);
      (frame.agents || []).forEach(function (agent) {
        var option = document.createElement("option");
        option.value = String(agent.id);
        var free = agent.online && agent.status === "available" && agent.load < agent.capacity;
        var why = !agent.online ? "offline" : agent.status !== "available" ? "away" : free ? "available" : "full";
        text(option, agent.display_name + " (" + why + ", " + agent.load + "/" + agent.capacity + ")");
        option.disabled = !free;
        select.appendChild(option);
      });
      var firstFree = select.querySelector("option:not([value='']):not(:disabled)");
      if (firstFree) select.value = firstFree.value;
      chat.pane.transferSubmit.disabled = false;
    });
  }

  function showTransferPanel(chat, open) {
    chat.pane.transferPanel.hidden = !open;
    chat.pane.transfer.setAttribute("aria-expanded", open ? "true" : "false");
    if (!open) return;
    chat.pane.transferSubmit.disabled = true;
    chat.pane.transferSelect.textContent = "";
    var loading = document.createElement("option");
    text(loading, "Loading agents…");
    chat.pane.transferSelect.appendChild(loading);
    if (!send({ type: "agents.list" })) toast("Not connected: try again once the connection is back.");
    chat.pane.transferSelect.focus();
  }

  function onTransferred(frame) {
    var chat = state.chats.get(frame.conversation);
    if (!chat) return;
    showTransferPanel(chat, false);
    var to = frame.to && frame.to.display_name;
    endChat(
      chat,
      "transferred",
      to ? "This chat was transferred to " + to + "." : "This chat was moved back to the queue.",
    );
  }

  function onRequeued(frame) {
    var chat = state.chats.get(frame.conversation);
    if (!chat) return;
    endChat(
      chat,
      "requeued",
      "This chat was moved back to the queue because your connection lapsed. Another agent may pick it up.",
    );
    announce("Chat with " + visitorName(chat) + " was moved back to the queue.");
  }

  function onError(frame) {
    var detail = frame.detail || frame.code || "Something went wrong.";
    if (frame.client_msg_id) {
      var found = false;
      state.chats.forEach(function (chat) {
        var pending = chat.pending.get(frame.client_msg_id);
        if (pending) {
          found = true;
          failPending(chat, pending, detail);
        }
      });
      if (found) return;
    }
    if (cannedError(frame)) return;
    if (frame.code === "rate_limited") {
      toast("Slow down a little: the server is refusing frames.");
    } else if (frame.code === "agent_unavailable") {
      toast("That agent cannot take this chat right now. Pick someone else or the queue.");
      send({ type: "agents.list" });
    } else if (frame.code === "not_found") {
      toast("That chat is no longer yours.");
    } else if (frame.code !== "conversation_closed") {
      toast(detail);
    }
  }

  // --- chats --------------------------------------------------------------------

  function visitorName(chat) {
    return chat.visitorId ? "Visitor #" + chat.visitorId : "Visitor";
  }

  function upsertChat(data) {
    var chat = state.chats.get(data.id);
    if (!chat) {
      chat = createChat(data);
      state.chats.set(chat.id, chat);
    }
    if (data.visitor && typeof data.visitor.id === "number") chat.visitorId = data.visitor.id;
    if (data.visitor_context) showVisitorContext(chat, data.visitor_context);
    if (typeof data.visitor_read_seq === "number") {
      chat.visitorReadSeq = Math.max(chat.visitorReadSeq, data.visitor_read_seq);
    }
    if (data.status === "active" && chat.status !== "active") reopenChat(chat);
    return chat;
  }

  function createChat(data) {
    var chat = {
      id: data.id,
      visitorId: data.visitor && data.visitor.id,
      status: "active",
      messages: new Map(), // seq -> message
      seqs: [], // held seqs, ascending
      rows: new Map(), // seq -> <li>
      pending: new Map(), // client_msg_id -> pending send
      notes: new Map(), // internal note id -> <li>
      unread: 0,
      countedThrough: 0, // highest seq already included in `unread`
      readSeq: 0,
      visitorReadSeq: 0,
      receiptRow: null,
      historyLoaded: false,
      syncing: false,
      visitorTyping: false,
      visitorTypingTimer: null,
      typingSentAt: 0,
      typingActive: false,
      typingIdleTimer: null,
      stickToBottom: true,
    };
    buildItem(chat);
    buildPane(chat);
    return chat;
  }

  function buildItem(chat) {
    var fragment = els.itemTemplate.content.cloneNode(true);
    var entry = part(fragment, ".chat-entry");
    var button = part(entry, ".chat-item");
    chat.item = {
      entry: entry,
      button: button,
      avatar: part(entry, ".avatar"),
      name: part(entry, ".item-name"),
      wait: part(entry, ".item-wait"),
      preview: part(entry, ".item-preview"),
      badge: part(entry, ".badge"),
      badgeCount: part(entry, ".badge-count"),
    };
    entry.dataset.conversation = String(chat.id);
    button.addEventListener("click", function () {
      selectChat(chat.id, true);
    });
    els.list.appendChild(entry);
  }

  function buildPane(chat) {
    var fragment = els.paneTemplate.content.cloneNode(true);
    var pane = part(fragment, ".pane");
    var input = part(pane, ".composer-input");
    var label = part(pane, ".composer-label");
    var log = part(pane, ".log");
    var inputId = "composer-" + chat.id;
    var titleId = "pane-title-" + chat.id;
    input.id = inputId;
    label.htmlFor = inputId;
    part(pane, ".pane-title").id = titleId;
    pane.setAttribute("aria-labelledby", titleId);
    pane.dataset.conversation = String(chat.id);
    // On a phone the open panel would take half the screen from the chat: folded there,
    // one tap on "About the visitor" away (the breakpoint is dashboard.css's).
    if (window.matchMedia("(max-width: 760px)").matches) part(pane, ".visitor-panel").open = false;
    chat.pane = {
      root: pane,
      avatar: part(pane, ".avatar"),
      title: part(pane, ".pane-title"),
      sub: part(pane, ".pane-sub"),
      close: part(pane, ".pane-close"),
      back: part(pane, ".pane-back"),
      notice: part(pane, ".pane-notice"),
      log: log,
      list: part(pane, ".messages"),
      pendingList: part(pane, ".messages-pending"),
      typing: part(pane, ".typing"),
      typingText: part(pane, ".typing-text"),
      form: part(pane, ".composer"),
      input: input,
      label: label,
      sendButton: part(pane, ".composer-send"),
      noteToggle: part(pane, ".composer-note"),
      attach: part(pane, ".composer-attach"),
      fileInput: part(pane, ".composer-file"),
      upload: part(pane, ".composer-upload"),
      transfer: part(pane, ".pane-transfer"),
      transferPanel: part(pane, ".transfer-panel"),
      transferSelect: part(pane, ".transfer-select"),
      transferSubmit: part(pane, ".transfer-submit"),
      suggest: part(pane, ".canned-suggest"),
    };
    attachCanned(chat);
    chat.pane.transfer.addEventListener("click", function () {
      if (chat.status === "active") showTransferPanel(chat, chat.pane.transferPanel.hidden);
    });
    part(pane, ".transfer-cancel").addEventListener("click", function () {
      showTransferPanel(chat, false);
      chat.pane.transfer.focus();
    });
    chat.pane.transferPanel.addEventListener("submit", function (event) {
      event.preventDefault();
      var value = chat.pane.transferSelect.value;
      var frame = { type: "conversation.transfer", conversation: chat.id, to_agent: value ? Number(value) : null };
      if (send(frame)) chat.pane.transferSubmit.disabled = true;
      else toast("Not connected: the chat can be transferred once the connection is back.");
    });
    chat.pane.noteToggle.addEventListener("change", function () {
      var noting = chat.pane.noteToggle.checked;
      chat.pane.form.classList.toggle("is-note", noting);
      input.placeholder = noting ? "Internal note: only agents see it…" : "Write a reply…";
      if (noting) stopTyping(chat);
    });
    chat.pane.close.addEventListener("click", function () {
      if (chat.status === "active") {
        if (send({ type: "conversation.close", conversation: chat.id })) {
          chat.pane.close.disabled = true;
          text(chat.pane.close, "Closing…");
        } else {
          toast("Not connected: the chat can be closed once the connection is back.");
        }
      } else {
        removeChat(chat);
      }
    });
    chat.pane.back.addEventListener("click", function () {
      root.classList.remove("has-selection");
      chat.item.button.focus();
    });
    chat.pane.form.addEventListener("submit", function (event) {
      event.preventDefault();
      submitComposer(chat);
    });
    chat.pane.fileInput.accept = ATTACHMENTS.accept;
    chat.pane.attach.addEventListener("click", function () {
      chat.pane.fileInput.click();
    });
    chat.pane.fileInput.addEventListener("change", function () {
      var file = chat.pane.fileInput.files[0];
      chat.pane.fileInput.value = "";
      uploadFile(chat, file);
    });
    input.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        submitComposer(chat);
      }
    });
    input.addEventListener("input", function () {
      onComposerInput(chat);
    });
    input.addEventListener("blur", function () {
      stopTyping(chat);
    });
    input.addEventListener("focus", function () {
      markRead(chat);
    });
    log.addEventListener("scroll", function () {
      chat.stickToBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 48;
    });
    pane.addEventListener("click", function (event) {
      var retry = event.target.closest(".retry");
      if (!retry) return;
      var pending = chat.pending.get(retry.dataset.clientMsgId);
      if (pending) transmit(chat, pending);
    });
    els.panes.appendChild(pane);
  }

  function removeChat(chat) {
    var wasSelected = state.selected === chat.id;
    chat.item.entry.remove();
    chat.pane.root.remove();
    state.chats.delete(chat.id);
    if (wasSelected) {
      state.selected = null;
      els.emptyPane.hidden = false;
      root.classList.remove("has-selection");
      var next = els.list.querySelector(".chat-item");
      if (next) next.focus();
    }
    refreshCounts();
  }

  function reopenChat(chat) {
    chat.status = "active";
    chat.item.entry.classList.remove("is-ended");
    chat.pane.root.classList.remove("is-ended");
    chat.pane.notice.hidden = true;
    chat.pane.input.disabled = false;
    chat.pane.sendButton.disabled = false;
    chat.pane.attach.disabled = false;
    chat.pane.close.disabled = false;
    text(chat.pane.close, "Close chat");
    chat.pane.transfer.disabled = false;
  }

  function endChat(chat, status, notice) {
    chat.status = status;
    chat.unread = 0;
    setVisitorTyping(chat, false);
    stopTyping(chat);
    chat.pending.forEach(function (pending) {
      failPending(chat, pending, "The chat is over.");
    });
    chat.item.entry.classList.add("is-ended");
    chat.pane.root.classList.add("is-ended");
    text(chat.pane.notice, notice);
    chat.pane.notice.hidden = false;
    chat.pane.input.disabled = true;
    chat.pane.sendButton.disabled = true;
    chat.pane.attach.disabled = true;
    chat.pane.close.disabled = false;
    text(chat.pane.close, "Remove from list");
    chat.pane.transfer.disabled = true;
    showTransferPanel(chat, false);
    updateItem(chat);
    refreshCounts();
  }

  function selectChat(id, byUser) {
    var chat = state.chats.get(id);
    if (!chat) return;
    if (state.selected !== null && state.selected !== id) {
      var previous = state.chats.get(state.selected);
      if (previous) {
        previous.pane.root.hidden = true;
        previous.item.button.setAttribute("aria-current", "false");
        previous.item.entry.classList.remove("is-selected");
        stopTyping(previous);
      }
    }
    state.selected = id;
    els.emptyPane.hidden = true;
    chat.pane.root.hidden = false;
    chat.item.button.setAttribute("aria-current", "true");
    chat.item.entry.classList.add("is-selected");
    root.classList.add("has-selection");
    scrollToBottom(chat);
    requestProfile(chat);
    if (byUser) {
      askNotificationPermissionOnce();
      if (!chat.pane.input.disabled) chat.pane.input.focus();
    }
    markRead(chat);
  }

  // Arrow keys move between chats in the list; Tab leaves it.
  els.list.addEventListener("keydown", function (event) {
    var keys = ["ArrowDown", "ArrowUp", "Home", "End"];
    if (keys.indexOf(event.key) === -1) return;
    var buttons = Array.prototype.slice.call(els.list.querySelectorAll(".chat-item"));
    var index = buttons.indexOf(document.activeElement);
    if (index === -1 || buttons.length === 0) return;
    event.preventDefault();
    var next = index;
    if (event.key === "ArrowDown") next = Math.min(buttons.length - 1, index + 1);
    if (event.key === "ArrowUp") next = Math.max(0, index - 1);
    if (event.key === "Home") next = 0;
    if (event.key === "End") next = buttons.length - 1;
    buttons[next].focus();
  });

  // --- messages -----------------------------------------------------------------

  /* Insert messages by seq, skipping seqs already held. Returns how many were new. */
  function addMessages(chat, messages, live) {
    var added = 0;
    var wasAtBottom = chat.stickToBottom;
    messages.forEach(function (message) {
      if (typeof message.seq !== "number" || chat.messages.has(message.seq)) return;
      if (message.sender === "agent" && message.client_msg_id) {
        var pending = chat.pending.get(message.client_msg_id);
        if (pending) settlePending(chat, pending);
      }
      chat.messages.set(message.seq, message);
      var row = messageRow(chat, message);
      chat.rows.set(message.seq, row);
      insertSorted(chat, message.seq, row);
      added += 1;
    });
    if (added) {
      updateReceipt(chat);
      if (wasAtBottom || !live) scrollToBottom(chat);
    }
    return added;
  }

  /* Internal notes sit after the message they followed (`after_seq`), before any later one. */
  function addNotes(chat, notes) {
    var wasAtBottom = chat.stickToBottom;
    (notes || []).forEach(function (note) {
      if (typeof note.id !== "number" || chat.notes.has(note.id)) return;
      var li = document.createElement("li");
      li.className = "msg msg-note";
      li.dataset.note = String(note.id);
      var label = document.createElement("p");
      label.className = "note-label";
      text(label, "Note" + (note.author ? " by " + note.author : "") + " · only agents see this");
      li.appendChild(label);
      var bubble = document.createElement("div");
      bubble.className = "bubble";
      renderBody(bubble, note.body);
      li.appendChild(bubble);
      chat.notes.set(note.id, li);
      var before = null;
      for (var i = 0; i < chat.seqs.length && !before; i += 1) {
        if (chat.seqs[i] > note.after_seq) before = chat.rows.get(chat.seqs[i]);
      }
      chat.pane.list.insertBefore(li, before);
    });
    if (wasAtBottom) scrollToBottom(chat);
  }

  function insertSorted(chat, seq, row) {
    var seqs = chat.seqs;
    // Nearly always the newest: walk back from the end.
    var i = seqs.length;
    while (i > 0 && seqs[i - 1] > seq) i -= 1;
    seqs.splice(i, 0, seq);
    var before = i + 1 < seqs.length ? chat.rows.get(seqs[i + 1]) : null;
    chat.pane.list.insertBefore(row, before);
  }

  function messageRow(chat, message) {
    var li = document.createElement("li");
    li.className = "msg msg-" + (message.sender === "agent" || message.sender === "system" ? message.sender : "visitor");
    li.dataset.seq = String(message.seq);
    if (message.sender === "system") {
      var note = document.createElement("p");
      note.className = "msg-system-text";
      text(note, message.body);
      li.appendChild(note);
      return li;
    }
    var bubble = document.createElement("div");
    bubble.className = "bubble";
    renderBody(bubble, message.body);
    if (message.attachment) bubble.appendChild(fileBlock(message.attachment));
    li.appendChild(bubble);
    var meta = document.createElement("p");
    meta.className = "meta";
    var who = document.createElement("span");
    who.className = "sr-only";
    text(who, message.sender === "agent" ? "You, " : visitorName(chat) + ", ");
    meta.appendChild(who);
    var time = document.createElement("time");
    if (message.sent_at) time.dateTime = message.sent_at;
    text(time, clockTime(message.sent_at));
    meta.appendChild(time);
    if (message.sender === "agent") {
      var receipt = document.createElement("span");
      receipt.className = "receipt";
      meta.appendChild(receipt);
    }
    li.appendChild(meta);
    return li;
  }

  /* "Sent" or "Seen" under my latest message only; earlier ones are implied. */
  function updateReceipt(chat) {
    var lastMine = null;
    for (var i = chat.seqs.length - 1; i >= 0; i -= 1) {
      if (chat.messages.get(chat.seqs[i]).sender === "agent") {
        lastMine = chat.seqs[i];
        break;
      }
    }
    var row = lastMine === null ? null : chat.rows.get(lastMine);
    if (chat.receiptRow && chat.receiptRow !== row) {
      var old = part(chat.receiptRow, ".receipt");
      if (old) {
        text(old, "");
        old.classList.remove("is-seen");
      }
    }
    chat.receiptRow = row;
    if (!row) return;
    var receipt = part(row, ".receipt");
    var seen = chat.visitorReadSeq >= lastMine;
    text(receipt, seen ? "Seen" : "Sent");
    receipt.classList.toggle("is-seen", seen);
  }

  function scrollToBottom(chat) {
    var log = chat.pane.log;
    log.scrollTop = log.scrollHeight;
    chat.stickToBottom = true;
  }

  /* The highest seq up to which nothing is missing. */
  function contiguousSeq(chat) {
    var seqs = chat.seqs;
    // seqs start at 1 and are gapless, so a full prefix has seqs[i] === i + 1.
    if (seqs.length === 0 || seqs[seqs.length - 1] === seqs.length) return seqs.length;
    var lo = 0;
    var hi = seqs.length - 1;
    while (lo < hi) {
      var mid = (lo + hi) >> 1;
      if (seqs[mid] === mid + 1) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  function maxSeq(chat) {
    return chat.seqs.length ? chat.seqs[chat.seqs.length - 1] : 0;
  }

  function requestSync(chat, afterSeq) {
    if (chat.syncing) return;
    if (send({ type: "sync", conversation: chat.id, after_seq: afterSeq })) chat.syncing = true;
  }

  function checkGaps(chat) {
    if (!chat.historyLoaded) return;
    var upTo = contiguousSeq(chat);
    if (upTo < maxSeq(chat)) requestSync(chat, upTo);
  }

  function countVisitorMessagesAfter(chat, seq) {
    var n = 0;
    for (var i = chat.seqs.length - 1; i >= 0 && chat.seqs[i] > seq; i -= 1) {
      if (chat.messages.get(chat.seqs[i]).sender === "visitor") n += 1;
    }
    return n;
  }

  function lastPreview(chat) {
    if (!chat.seqs.length) return "";
    var message = chat.messages.get(chat.seqs[chat.seqs.length - 1]);
    return (message.sender === "agent" ? "You: " : "") + messageText(message).replace(/\s+/g, " ");
  }

  /* When the visitor's oldest message since my last reply was sent, or null. */
  function waitingSince(chat) {
    var since = null;
    for (var i = chat.seqs.length - 1; i >= 0; i -= 1) {
      var message = chat.messages.get(chat.seqs[i]);
      if (message.sender === "agent") break;
      if (message.sender === "visitor") since = message.sent_at;
    }
    return since ? new Date(since) : null;
  }

  // --- reading ------------------------------------------------------------------

  function markRead(chat) {
    if (state.selected !== chat.id || chat.status !== "active" || !pageAttentive()) return;
    var seq = maxSeq(chat);
    if (seq > chat.readSeq) {
      if (!send({ type: "read", conversation: chat.id, seq: seq })) return;
      chat.readSeq = seq;
    }
    if (chat.unread) {
      chat.unread = 0;
      updateItem(chat);
      refreshCounts();
    }
  }

  function markSelectedRead() {
    var chat = state.selected !== null && state.chats.get(state.selected);
    if (chat) markRead(chat);
    refreshCounts();
  }

  window.addEventListener("focus", markSelectedRead);
  document.addEventListener("visibilitychange", markSelectedRead);

  // --- typing -------------------------------------------------------------------

  function setVisitorTyping(chat, active, draft) {
    window.clearTimeout(chat.visitorTypingTimer);
    chat.visitorTyping = active && chat.status === "active";
    chat.pane.typing.hidden = !chat.visitorTyping;
    var peek = chat.visitorTyping && draft && draft.trim() ? draft : null;
    chat.pane.typing.classList.toggle("has-draft", peek !== null);
    text(
      chat.pane.typingText,
      !chat.visitorTyping ? "" : peek !== null ? visitorName(chat) + " is typing: " + peek : visitorName(chat) + " is typing…",
    );
    if (chat.visitorTyping) {
      chat.visitorTypingTimer = window.setTimeout(function () {
        setVisitorTyping(chat, false);
      }, VISITOR_TYPING_TTL_MS);
    }
    updateItem(chat);
  }

  function onComposerInput(chat) {
    // Writing a note is nothing the visitor may see, not even as "typing".
    if (chat.status !== "active" || chat.pane.noteToggle.checked) return;
    if (!chat.pane.input.value.trim()) {
      stopTyping(chat);
      return;
    }
    var now = Date.now();
    if (!chat.typingActive || now - chat.typingSentAt > TYPING_REPEAT_MS) {
      if (send({ type: "typing", conversation: chat.id, active: true })) {
        chat.typingActive = true;
        chat.typingSentAt = now;
      }
    }
    window.clearTimeout(chat.typingIdleTimer);
    chat.typingIdleTimer = window.setTimeout(function () {
      stopTyping(chat);
    }, TYPING_IDLE_MS);
  }

  function stopTyping(chat) {
    window.clearTimeout(chat.typingIdleTimer);
    if (!chat.typingActive) return;
    chat.typingActive = false;
    if (chat.status === "active") send({ type: "typing", conversation: chat.id, active: false });
  }

  // --- sending ------------------------------------------------------------------

  function submitComposer(chat) {
    if (chat.status !== "active") return;
    var body = chat.pane.input.value.trim();
    if (!body) return;
    if (chat.pane.noteToggle.checked) {
      var frame = { type: "note.send", conversation: chat.id, client_msg_id: newClientMsgId(), body: body };
      if (send(frame)) chat.pane.input.value = "";
      else toast("Not connected: the note can be saved once the connection is back.");
      return;
    }
    chat.pane.input.value = "";
    stopTyping(chat);
    var pending = { id: newClientMsgId(), body: body, state: "sending", timer: null, row: null };
    pending.row = pendingRow(chat, pending);
    chat.pending.set(pending.id, pending);
    chat.pane.pendingList.appendChild(pending.row);
    scrollToBottom(chat);
    transmit(chat, pending);
  }

  // --- attachments --------------------------------------------------------------

  /* The session cookie opens a file's URLs, which answer only this chat's participants
     (and supervisors). An upload goes out as a message of its own, like a reply. */
  var ATTACHMENTS = {
    url: root.dataset.attachmentsUrl || "/api/v1/attachments",
    maxBytes: Number(root.dataset.attachmentMaxBytes) || 10 * 1024 * 1024,
    accept: root.dataset.attachmentAccept || "",
  };
  var FILE_URL = /^\/attachments\/\d+\/(thumbnail\/)?$/;

  function sizeText(bytes) {
    if (bytes >= 1048576) return (bytes / 1048576).toFixed(1).replace(/\.0$/, "") + " MB";
    if (bytes >= 1024) return Math.round(bytes / 1024) + " KB";
    return bytes + " B";
  }

  var UPLOAD_ERRORS = {
    too_large: "is too large: the limit is " + sizeText(ATTACHMENTS.maxBytes) + ".",
    unsupported_type: "cannot be sent: images, PDF, text, Word and Excel files only.",
    type_mismatch: "cannot be sent: its name does not match what the file is.",
    conversation_closed: "was not sent: the chat is over.",
    rate_limited: "was not sent: too many files. Please wait a moment.",
  };

  /* A message's text for previews and announcements: its body, else its file's name. */
  function messageText(message) {
    if (message.body || !message.attachment) return message.body || "";
    return "File: " + message.attachment.name;
  }

  function csrfToken() {
    var field = document.querySelector('input[name="csrfmiddlewaretoken"]');
    if (field) return field.value;
    var match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  /* An image's thumbnail, or the file's name and size; either is a download link. Only
     the server's own attachment URLs become an href. */
  function fileBlock(file) {
    var link = document.createElement("a");
    link.className = "file";
    if (FILE_URL.test(file.url)) link.href = file.url;
    link.setAttribute("download", file.name);
    if (file.thumbnail_url && FILE_URL.test(file.thumbnail_url)) {
      link.classList.add("file-image");
      link.setAttribute("aria-label", "Download " + file.name + ", " + sizeText(file.size));
      var img = document.createElement("img");
      img.className = "file-thumb";
      img.src = file.thumbnail_url;
      img.alt = file.name;
      link.appendChild(img);
      return link;
    }
    var icon = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    icon.setAttribute("viewBox", "0 0 24 24");
    icon.setAttribute("class", "file-icon");
    icon.setAttribute("aria-hidden", "true");
    var path = icon.appendChild(document.createElementNS(icon.namespaceURI, "path"));
    path.setAttribute("d", "M14 2H6a2 2 0 0 0-2 2v16a2 2 0 0 0 2 2h12a2 2 0 0 0 2-2V8zM14 2v6h6");
    var name = text(document.createElement("span"), file.name);
    name.className = "file-name";
    var size = text(document.createElement("span"), sizeText(file.size));
    size.className = "file-size";
    link.appendChild(icon);
    link.appendChild(name);
    link.appendChild(size);
    return link;
  }

  function setUploadStatus(chat, message, isError) {
    text(chat.pane.upload, message || "");
    chat.pane.upload.classList.toggle("is-error", Boolean(isError));
  }

  function uploadFile(chat, file) {
    if (!file || chat.status !== "active") return;
    var quoted = "\u201c" + file.name + "\u201d ";
    if (file.size > ATTACHMENTS.maxBytes) {
      setUploadStatus(chat, quoted + UPLOAD_ERRORS.too_large, true);
      return;
    }
    var form = new FormData();
    form.append("conversation", String(chat.id));
    form.append("file", file);
    // XMLHttpRequest, not fetch: only it reports upload progress.
    var xhr = new XMLHttpRequest();
    xhr.open("POST", ATTACHMENTS.url);
    xhr.setRequestHeader("X-CSRFToken", csrfToken());
    xhr.responseType = "json";
    chat.pane.attach.disabled = true;
    setUploadStatus(chat, "Uploading " + file.name + "\u2026");
    xhr.upload.addEventListener("progress", function (event) {
      if (event.lengthComputable) {
        setUploadStatus(chat, "Uploading " + file.name + "\u2026 " + Math.round((event.loaded * 100) / event.total) + "%");
      }
    });
    xhr.addEventListener("load", function () {
      chat.pane.attach.disabled = chat.status !== "active";
      var data = xhr.response || {};
      if (xhr.status !== 201) {
        setUploadStatus(chat, quoted + (UPLOAD_ERRORS[data.error] || "was not sent: " + (data.detail || "error " + xhr.status) + "."), true);
        return;
      }
      setUploadStatus(chat, "");
      var pending = { id: newClientMsgId(), body: "", attachment: data, state: "sending", timer: null, row: null };
      pending.row = pendingRow(chat, pending);
      chat.pending.set(pending.id, pending);
      chat.pane.pendingList.appendChild(pending.row);
      scrollToBottom(chat);
      transmit(chat, pending);
    });
    xhr.addEventListener("error", function () {
      chat.pane.attach.disabled = chat.status !== "active";
      setUploadStatus(chat, quoted + "was not sent: the connection failed.", true);
    });
    xhr.send(form);
  }

  function pendingRow(chat, pending) {
    var li = document.createElement("li");
    li.className = "msg msg-agent is-pending";
    var bubble = document.createElement("div");
    bubble.className = "bubble";
    renderBody(bubble, pending.body);
    if (pending.attachment) bubble.appendChild(fileBlock(pending.attachment));
    li.appendChild(bubble);
    var meta = document.createElement("p");
    meta.className = "meta";
    var status = document.createElement("span");
    status.className = "send-state";
    meta.appendChild(status);
    var retry = document.createElement("button");
    retry.type = "button";
    retry.className = "retry";
    retry.dataset.clientMsgId = pending.id;
    retry.hidden = true;
    text(retry, "Retry");
    meta.appendChild(retry);
    li.appendChild(meta);
    return li;
  }

  function transmit(chat, pending) {
    window.clearTimeout(pending.timer);
    setPendingState(chat, pending, "sending");
    var frame = {
      type: "message.send",
      conversation: chat.id,
      client_msg_id: pending.id,
      body: pending.body,
    };
    if (pending.attachment) frame.attachment = pending.attachment.id;
    var sent = send(frame);
    // Not connected: it goes out after the next `ready` (resendPending).
    if (!sent) return;
    pending.timer = window.setTimeout(function () {
      if (chat.pending.get(pending.id) === pending) failPending(chat, pending, "No answer from the server.");
    }, ACK_TIMEOUT_MS);
  }

  function resendPending(chat) {
    chat.pending.forEach(function (pending) {
      if (pending.state === "sending") transmit(chat, pending);
    });
  }

  function setPendingState(chat, pending, kind, detail) {
    pending.state = kind;
    pending.row.classList.toggle("is-failed", kind === "failed");
    var status = part(pending.row, ".send-state");
    var retry = part(pending.row, ".retry");
    if (kind === "failed") {
      text(status, "Not sent" + (detail ? ": " + detail : "."));
      retry.hidden = chat.status !== "active";
    } else {
      text(status, state.connected ? "Sending…" : "Waiting for connection…");
      retry.hidden = true;
    }
  }

  function failPending(chat, pending, detail) {
    window.clearTimeout(pending.timer);
    setPendingState(chat, pending, "failed", detail);
  }

  function settlePending(chat, pending) {
    window.clearTimeout(pending.timer);
    pending.row.remove();
    chat.pending.delete(pending.id);
  }

  // --- list items, counts, title ------------------------------------------------

  function updateItem(chat) {
    var item = chat.item;
    var name = visitorName(chat);
    text(item.name, name);
    text(item.avatar, chat.visitorId ? String(chat.visitorId).slice(-2) : "V");
    item.avatar.dataset.tone = String((chat.visitorId || 0) % 6);
    text(chat.pane.title, name);
    text(chat.pane.avatar, item.avatar.textContent);
    chat.pane.avatar.dataset.tone = item.avatar.dataset.tone;
    text(chat.pane.label, "Reply to " + name);
    var subtitle = "Chat #" + chat.id;
    if (chat.seqs.length) {
      subtitle += " · started " + clockTime(chat.messages.get(chat.seqs[0]).sent_at);
    }
    if (chat.status === "closed") subtitle += " · closed";
    else if (chat.status === "requeued") subtitle += " · moved back to the queue";
    else if (chat.status === "ended") subtitle += " · no longer yours";
    text(chat.pane.sub, subtitle);

    if (chat.visitorTyping) {
      text(item.preview, "typing…");
      item.preview.classList.add("is-typing");
    } else {
      text(item.preview, lastPreview(chat) || (chat.historyLoaded ? "No messages" : "Loading…"));
      item.preview.classList.remove("is-typing");
    }
    if (chat.unread > 0 && chat.status === "active") {
      text(item.badgeCount, String(chat.unread));
      item.badge.hidden = false;
      item.entry.classList.add("has-unread");
    } else {
      item.badge.hidden = true;
      item.entry.classList.remove("has-unread");
    }
    updateWait(chat, Date.now());
  }

  function updateWait(chat, now) {
    var wait = chat.item.wait;
    var since = chat.status === "active" ? waitingSince(chat) : null;
    if (!since || isNaN(since.getTime())) {
      if (chat.status !== "active") {
        text(wait, chat.status === "closed" ? "Closed" : "Ended");
        wait.hidden = false;
        wait.dataset.level = "ended";
      } else {
        wait.hidden = true;
      }
      return;
    }
    var ms = now - since.getTime();
    text(wait, "Waiting " + duration(ms));
    wait.title = "Waiting for a reply since " + clockTime(since.toISOString());
    wait.dataset.level = ms >= 5 * 60000 ? "urgent" : ms >= 2 * 60000 ? "warn" : "ok";
    wait.hidden = false;
  }

  window.setInterval(function () {
    var now = Date.now();
    state.chats.forEach(function (chat) {
      updateWait(chat, now);
    });
  }, WAIT_TICK_MS);

  function refreshCounts() {
    var open = 0;
    var unread = 0;
    state.chats.forEach(function (chat) {
      if (chat.status === "active") {
        open += 1;
        unread += chat.unread;
      }
    });
    text(els.load, String(open));
    text(els.capacity, String(state.capacity));
    els.listEmpty.hidden = state.chats.size > 0;
    document.title = unread > 0 ? "(" + unread + ") " + TITLE : TITLE;
  }

  function setQueueLength(value) {
    if (typeof value !== "number") return;
    state.queueLength = value;
    text(els.queue, String(value));
    els.queue.parentElement.classList.toggle("has-queue", value > 0);
  }

  // --- presence -----------------------------------------------------------------

  function updatePresenceControls() {
    var buttons = els.presence.querySelectorAll(".presence-option");
    Array.prototype.forEach.call(buttons, function (button) {
      var status = button.dataset.status;
      button.setAttribute("aria-pressed", String(state.status === status));
      button.classList.toggle("is-pending", state.presenceWanted === status);
      button.disabled = !state.connected;
    });
    root.dataset.presence = state.status;
    if (state.presenceWanted) {
      text(els.presenceNote, "Switching to " + state.presenceWanted + "…");
    } else {
      text(
        els.presenceNote,
        state.status === "available"
          ? "You are taking new chats."
          : state.autoAway
            ? "Away while you were idle: no new chats. You are back as soon as you use this page."
            : "Away: no new chats come to you.",
      );
    }
  }

  els.presence.addEventListener("click", function (event) {
    var button = event.target.closest(".presence-option");
    if (!button) return;
    askNotificationPermissionOnce();
    var wanted = button.dataset.status;
    if (wanted === state.status && state.presenceWanted === null) return;
    if (send({ type: "presence", status: wanted })) {
      state.presenceWanted = wanted;
      updatePresenceControls();
    }
  });

  // --- idle tracking (auto-away) -------------------------------------------------
  // The last input (key, pointer, focus) in any tab of this browser, shared through
  // localStorage so a background tab does not report its agent idle. The server
  // decides what idle means (SUPPORTDESK_AUTO_AWAY_SECONDS) from each ping.

  var LAST_INPUT_KEY = "supportdesk.agent-last-input";
  var lastInput = Date.now();

  function sharedLastInput() {
    try {
      return Math.max(lastInput, Number(window.localStorage.getItem(LAST_INPUT_KEY)) || 0);
    } catch (err) {
      return lastInput;
    }
  }

  function idleSeconds() {
    return Math.max(0, Math.round((Date.now() - sharedLastInput()) / 1000));
  }

  function noteInput() {
    var now = Date.now();
    if (now - lastInput < 1000) return;
    lastInput = now;
    try {
      window.localStorage.setItem(LAST_INPUT_KEY, String(now));
    } catch (err) {
      /* storage blocked: this tab's own input still counts */
    }
    // Put away for idleness: the first input brings the agent back now, not at the next ping.
    if (state.autoAway && state.connected) ping();
  }

  ["keydown", "pointerdown", "pointermove", "wheel", "focus"].forEach(function (kind) {
    window.addEventListener(kind, noteInput, { passive: true, capture: true });
  });
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible") noteInput();
  });

  // --- desktop notifications ----------------------------------------------------

  function notificationsSupported() {
    return "Notification" in window;
  }

  function alreadyAsked() {
    try {
      return window.localStorage.getItem(NOTIFY_ASKED_KEY) === "1";
    } catch (err) {
      return false;
    }
  }

  function rememberAsked() {
    try {
      window.localStorage.setItem(NOTIFY_ASKED_KEY, "1");
    } catch (err) {
      /* private mode: we may ask again next visit */
    }
  }

  /* Called from user gestures only; asks at most once, and nothing depends on the answer. */
  function askNotificationPermissionOnce() {
    if (!notificationsSupported() || Notification.permission !== "default" || alreadyAsked()) {
      return;
    }
    rememberAsked();
    try {
      var asked = Notification.requestPermission(updateNotifyButton);
      if (asked && typeof asked.then === "function") asked.then(updateNotifyButton, updateNotifyButton);
    } catch (err) {
      /* old browsers without the promise form */
    }
  }

  function updateNotifyButton() {
    els.notify.hidden = !(
      notificationsSupported() &&
      Notification.permission === "default" &&
      alreadyAsked()
    );
  }

  els.notify.addEventListener("click", function () {
    try {
      window.localStorage.removeItem(NOTIFY_ASKED_KEY);
    } catch (err) {
      /* ignore */
    }
    askNotificationPermissionOnce();
    els.notify.hidden = true;
  });

  function notifyDesktop(title, body, chat) {
    if (pageAttentive() && state.selected === chat.id) return;
    if (!notificationsSupported() || Notification.permission !== "granted") return;
    try {
      var note = new Notification(title, {
        body: body.slice(0, 200),
        tag: "supportdesk-chat-" + chat.id,
      });
      note.onclick = function () {
        window.focus();
        selectChat(chat.id, true);
        note.close();
      };
    } catch (err) {
      /* some platforms only allow notifications from a service worker */
    }
  }

  // --- canned responses -----------------------------------------------------------
  //
  // The list comes with `canned` after every `ready` and again whenever it changes
  // (this tab's edits, another tab's, a supervisor's or an admin's: the server rings
  // every affected socket), so expanding `/shortcut` never waits for the network.

  var CANNED_ERROR_CODES = [
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
  var MAX_SUGGESTIONS = 8;

  var canned = {
    responses: [],
    byShortcut: new Map(), // shortcut -> response
    canEditShared: false,
    editing: null, // id of the response in the form, or null for a new one
    awaiting: null, // "save" or "delete" while a request is unanswered
    dialog: document.getElementById("canned-dialog"),
    list: document.getElementById("canned-list"),
    empty: document.getElementById("canned-empty"),
    form: document.getElementById("canned-form"),
    formTitle: document.getElementById("canned-form-title"),
    shortcut: document.getElementById("canned-shortcut"),
    body: document.getElementById("canned-body"),
    sharedToggle: document.getElementById("canned-shared-toggle"),
    shared: document.getElementById("canned-shared"),
    error: document.getElementById("canned-error"),
    save: document.getElementById("canned-save"),
    cancel: document.getElementById("canned-cancel"),
    itemTemplate: document.getElementById("canned-item-template"),
  };

  function onCanned(frame) {
    canned.responses = Array.isArray(frame.responses) ? frame.responses : [];
    canned.canEditShared = frame.can_edit_shared === true;
    canned.byShortcut = new Map();
    canned.responses.forEach(function (response) {
      canned.byShortcut.set(response.shortcut, response);
    });
    // The snippet being edited was deleted elsewhere: what is typed becomes a new one.
    if (canned.editing !== null && !canned.responses.some(isEditing)) setEditing(null);
    renderCannedList();
    state.chats.forEach(function (chat) {
      if (!chat.pane.suggest.hidden) updateSuggestions(chat);
    });
  }

  function isEditing(response) {
    return response.id === canned.editing;
  }

  function onCannedSaved(frame) {
    if (canned.awaiting !== "save") return;
    canned.awaiting = null;
    canned.save.disabled = false;
    var shortcut = frame.response ? frame.response.shortcut : "";
    setEditing(null);
    announce("Saved /" + shortcut + ".");
  }

  function onCannedDeleted() {
    if (canned.awaiting !== "delete") return;
    canned.awaiting = null;
    announce("Canned response deleted.");
  }

  /* An `error` answering this tab's canned request; true if it was one. The server
     answers one socket's frames in order, so the awaited answer is the next one. */
  function cannedError(frame) {
    if (!canned.awaiting || CANNED_ERROR_CODES.indexOf(frame.code) === -1) return false;
    var what = canned.awaiting;
    canned.awaiting = null;
    canned.save.disabled = false;
    var detail = frame.detail || frame.code;
    if (frame.code === "bad_frame" && what === "save") detail = "Write the text of the response.";
    if (frame.code === "unavailable") detail = "The server cannot save this right now; try again shortly.";
    if (what === "save" && canned.dialog.open) {
      showCannedError(detail);
      (frame.code === "bad_shortcut" || frame.code === "duplicate_shortcut"
        ? canned.shortcut
        : canned.body
      ).focus();
    } else {
      toast(detail);
    }
    return true;
  }

  function showCannedError(message) {
    text(canned.error, message);
    canned.error.hidden = !message;
  }

  function renderCannedList() {
    canned.list.textContent = "";
    canned.responses.forEach(function (response) {
      var fragment = canned.itemTemplate.content.cloneNode(true);
      var item = part(fragment, ".canned-item");
      item.dataset.shortcut = response.shortcut;
      text(part(item, ".canned-item-shortcut"), "/" + response.shortcut);
      part(item, ".canned-item-tag").hidden = !response.shared;
      text(part(item, ".canned-item-body"), response.body);
      var edit = part(item, ".canned-edit");
      var remove = part(item, ".canned-delete");
      edit.setAttribute("aria-label", "Edit /" + response.shortcut);
      remove.setAttribute("aria-label", "Delete /" + response.shortcut);
      if (!response.editable) {
        edit.hidden = true;
        remove.hidden = true;
      }
      edit.addEventListener("click", function () {
        setEditing(response);
        canned.body.focus();
      });
      remove.addEventListener("click", function () {
        deleteCanned(response);
      });
      canned.list.appendChild(fragment);
    });
    canned.empty.hidden = canned.responses.length > 0;
    canned.sharedToggle.hidden = !canned.canEditShared || canned.editing !== null;
  }

  function setEditing(response) {
    canned.editing = response ? response.id : null;
    canned.shortcut.value = response ? response.shortcut : "";
    canned.body.value = response ? response.body : "";
    canned.shared.checked = false;
    text(canned.formTitle, response ? "Edit /" + response.shortcut : "New response");
    text(canned.save, response ? "Save changes" : "Add response");
    canned.cancel.hidden = !response;
    canned.sharedToggle.hidden = !canned.canEditShared || Boolean(response);
    showCannedError("");
  }

  function deleteCanned(response) {
    if (!window.confirm("Delete the canned response /" + response.shortcut + "?")) return;
    if (!send({ type: "canned.delete", id: response.id })) {
      toast("Not connected: try again once the connection is back.");
      return;
    }
    canned.awaiting = "delete";
    if (canned.editing === response.id) setEditing(null);
  }

  canned.form.addEventListener("submit", function (event) {
    event.preventDefault();
    var frame = { shortcut: canned.shortcut.value, body: canned.body.value };
    if (canned.editing !== null) {
      frame.type = "canned.update";
      frame.id = canned.editing;
    } else {
      frame.type = "canned.create";
      if (canned.canEditShared && canned.shared.checked) frame.shared = true;
    }
    // The server checks everything; the form only says what it answers.
    if (!send(frame)) {
      showCannedError("Not connected: save again once the connection is back.");
      return;
    }
    showCannedError("");
    canned.awaiting = "save";
    canned.save.disabled = true;
  });

  canned.cancel.addEventListener("click", function () {
    setEditing(null);
    canned.shortcut.focus();
  });

  document.getElementById("canned-open").addEventListener("click", function () {
    renderCannedList();
    canned.dialog.showModal();
    canned.shortcut.focus();
  });

  document.getElementById("canned-close").addEventListener("click", function () {
    canned.dialog.close();
  });

  /* `close` fires a task after the dialog hides: by then the agent may already be typing
     in a composer, and taking focus back would send their keys to the button. */
  canned.dialog.addEventListener("close", function () {
    var active = document.activeElement;
    if (!active || active === document.body || canned.dialog.contains(active)) {
      document.getElementById("canned-open").focus();
    }
  });

  // --- expanding `/shortcut` in the composer

  /* The `/word` that ends at the caret, at the start of the text or after whitespace
     (so URLs and paths are left alone); null if there is none. */
  function shortcutAtCaret(input) {
    if (input.selectionStart !== input.selectionEnd) return null;
    var caret = input.selectionStart;
    var match = /(^|\s)\/([A-Za-z0-9_-]*)$/.exec(input.value.slice(0, caret));
    if (!match) return null;
    return { start: caret - match[2].length - 1, end: caret, word: match[2].toLowerCase() };
  }

  function insertCanned(chat, token, response) {
    var input = chat.pane.input;
    input.setRangeText(response.body, token.start, token.end, "end");
    hideSuggestions(chat);
    // As if typed: the typing indicator, and a list that may now close.
    onComposerInput(chat);
    announce("Inserted /" + response.shortcut + ".");
  }

  function matchingResponses(word) {
    var exact = canned.byShortcut.get(word);
    var rest = canned.responses.filter(function (response) {
      return response !== exact && response.shortcut.indexOf(word) === 0;
    });
    return (exact ? [exact] : []).concat(rest).slice(0, MAX_SUGGESTIONS);
  }

  function updateSuggestions(chat) {
    var token = chat.status === "active" ? shortcutAtCaret(chat.pane.input) : null;
    var matches = token ? matchingResponses(token.word) : [];
    if (!matches.length) {
      hideSuggestions(chat);
      return;
    }
    var suggest = chat.pane.suggest;
    var keep = chat.suggestActive && matches.indexOf(chat.suggestActive) !== -1;
    chat.suggestActive = keep ? chat.suggestActive : matches[0];
    chat.suggestions = matches;
    suggest.textContent = "";
    matches.forEach(function (response, i) {
      var option = document.createElement("li");
      option.id = suggest.id + "-" + i;
      option.className = "canned-option";
      option.setAttribute("role", "option");
      var name = document.createElement("span");
      name.className = "canned-option-shortcut";
      name.textContent = "/" + response.shortcut;
      var preview = document.createElement("span");
      preview.className = "canned-option-body";
      preview.textContent = response.body;
      option.appendChild(name);
      option.appendChild(preview);
      // mousedown would take the focus from the composer first.
      option.addEventListener("mousedown", function (event) {
        event.preventDefault();
      });
      option.addEventListener("click", function () {
        var at = shortcutAtCaret(chat.pane.input);
        if (at) insertCanned(chat, at, response);
      });
      suggest.appendChild(option);
    });
    suggest.hidden = false;
    highlightSuggestion(chat);
  }

  function highlightSuggestion(chat) {
    var options = chat.pane.suggest.children;
    var active = chat.suggestions.indexOf(chat.suggestActive);
    Array.prototype.forEach.call(options, function (option, i) {
      option.setAttribute("aria-selected", i === active ? "true" : "false");
    });
    if (options[active]) {
      chat.pane.input.setAttribute("aria-activedescendant", options[active].id);
      options[active].scrollIntoView({ block: "nearest" });
    }
  }

  function hideSuggestions(chat) {
    chat.pane.suggest.hidden = true;
    chat.pane.suggest.textContent = "";
    chat.suggestions = [];
    chat.suggestActive = null;
    chat.pane.input.removeAttribute("aria-activedescendant");
  }

  /* Keys for the list and for expanding; true when the key was used up here. */
  function cannedKeydown(chat, event) {
    if (event.isComposing || event.altKey || event.ctrlKey || event.metaKey) return false;
    var open = !chat.pane.suggest.hidden && chat.suggestions.length > 0;
    if (open && (event.key === "ArrowDown" || event.key === "ArrowUp")) {
      var step = event.key === "ArrowDown" ? 1 : -1;
      var count = chat.suggestions.length;
      var at = chat.suggestions.indexOf(chat.suggestActive);
      chat.suggestActive = chat.suggestions[(at + step + count) % count];
      highlightSuggestion(chat);
      return true;
    }
    if (open && event.key === "Escape") {
      hideSuggestions(chat);
      return true;
    }
    var picking = (event.key === "Enter" && !event.shiftKey) || event.key === "Tab";
    if (open && picking && !event.shiftKey && chat.suggestActive) {
      var token = shortcutAtCaret(chat.pane.input);
      if (token) {
        insertCanned(chat, token, chat.suggestActive);
        return true;
      }
    }
    // Typed out in full: Space, Tab or Enter expands a known shortcut. An unknown one
    // stays as typed (and Enter sends it, Tab moves on, as without this feature).
    if ((picking && !event.shiftKey) || event.key === " ") {
      var typed = shortcutAtCaret(chat.pane.input);
      var response = typed && canned.byShortcut.get(typed.word);
      if (response) {
        insertCanned(chat, typed, response);
        return true;
      }
    }
    return false;
  }

  function attachCanned(chat) {
    var input = chat.pane.input;
    chat.pane.suggest.id = "canned-suggest-" + chat.id;
    chat.suggestions = [];
    chat.suggestActive = null;
    input.setAttribute("aria-autocomplete", "list");
    input.setAttribute("aria-controls", chat.pane.suggest.id);
    // Registered before the composer's own keydown (Enter sends), which it pre-empts.
    input.addEventListener("keydown", function (event) {
      if (cannedKeydown(chat, event)) {
        event.preventDefault();
        event.stopImmediatePropagation();
      }
    });
    input.addEventListener("input", function () {
      updateSuggestions(chat);
    });
    input.addEventListener("click", function () {
      updateSuggestions(chat);
    });
    input.addEventListener("blur", function () {
      hideSuggestions(chat);
    });
  }

  // --- the visitor panel ----------------------------------------------------------
  /* What the widget reported about the visitor (page, referrer, browser, time zone)
     and their earlier chats. All of it came from the visitor's browser and may be a
     lie: it is shown as text, and URLs only as http(s) links that open in a new tab
     without a referrer or an opener. */

  var LOCAL_TIME_TICK_MS = 15000;

  function visitorPanel(chat) {
    if (!chat.visitorPanel) {
      var pane = chat.pane.root;
      chat.visitorPanel = {
        whoFact: part(pane, ".visitor-fact-who"),
        who: part(pane, ".visitor-who"),
        page: part(pane, ".visitor-page"),
        referrer: part(pane, ".visitor-referrer"),
        browser: part(pane, ".visitor-browser"),
        time: part(pane, ".visitor-time"),
        previousCount: part(pane, ".visitor-previous-count"),
        previous: part(pane, ".visitor-previous"),
        history: part(pane, ".visitor-history"),
        historyTitle: part(pane, ".visitor-history-title"),
        historyMessages: part(pane, ".visitor-history-messages"),
      };
      part(pane, ".visitor-history-close").addEventListener("click", function () {
        chat.visitorPanel.history.hidden = true;
        chat.historyWanted = null;
      });
    }
    return chat.visitorPanel;
  }

  function outsideLink(url, label) {
    var href = url ? safeHref(url) : null;
    if (!href) return null;
    var a = document.createElement("a");
    a.href = href;
    a.target = "_blank";
    a.rel = "noopener noreferrer nofollow";
    a.title = url;
    a.textContent = label || url;
    return a;
  }

  function showLink(el, url, label, fallback) {
    el.textContent = "";
    var link = outsideLink(url, label);
    if (link) el.appendChild(link);
    else text(el, fallback);
  }

  function showVisitorContext(chat, context) {
    if (!context || typeof context !== "object") return;
    chat.visitorContext = context;
    var panel = visitorPanel(chat);
    var who = [context.name, context.email].filter(Boolean).join(" · ");
    panel.whoFact.hidden = !who;
    text(panel.who, who);
    showLink(panel.page, context.page_url, context.page_title, "Not reported yet");
    showLink(panel.referrer, context.referrer, null, "Direct, or not reported");
    var software = [context.browser, context.os].filter(Boolean).join(" on ");
    text(panel.browser, software || "Unknown");
    panel.browser.title = context.user_agent || "";
    updateLocalTime(chat);
  }

  function updateLocalTime(chat) {
    var zone = chat.visitorContext && chat.visitorContext.timezone;
    var el = visitorPanel(chat).time;
    if (!zone) {
      text(el, "Unknown");
      return;
    }
    try {
      var time = new Date().toLocaleTimeString([], {
        timeZone: zone,
        hour: "2-digit",
        minute: "2-digit",
      });
      text(el, time + " (" + zone.replace(/_/g, " ") + ")");
    } catch (err) {
      text(el, zone); // a zone this browser does not know
    }
  }

  window.setInterval(function () {
    state.chats.forEach(function (chat) {
      if (chat.visitorContext) updateLocalTime(chat);
    });
  }, LOCAL_TIME_TICK_MS);

  /* The visitor's earlier chats are asked for when a chat is first opened. */
  function requestProfile(chat) {
    if (chat.profileAsked) return;
    if (send({ type: "visitor.profile", conversation: chat.id })) chat.profileAsked = true;
  }

  function dateLabel(iso) {
    var date = new Date(iso);
    if (isNaN(date.getTime())) return "";
    return date.toLocaleDateString([], { day: "numeric", month: "short", year: "numeric" });
  }

  function onVisitorProfile(frame) {
    var chat = state.chats.get(frame.conversation);
    if (!chat) return;
    showVisitorContext(chat, frame.visitor_context);
    var panel = visitorPanel(chat);
    var previous = frame.previous || { count: 0, conversations: [] };
    var count = Number(previous.count) || 0;
    text(
      panel.previousCount,
      count === 0 ? "None: this is their first chat" : count === 1 ? "1 earlier chat" : count + " earlier chats",
    );
    panel.previous.textContent = "";
    (previous.conversations || []).forEach(function (earlier) {
      var li = document.createElement("li");
      var button = document.createElement("button");
      button.type = "button";
      button.className = "visitor-previous-open";
      var said = earlier.first_message ? " · “" + earlier.first_message + "”" : "";
      text(button, dateLabel(earlier.created_at) + " · " + earlier.status + said);
      button.addEventListener("click", function () {
        chat.historyWanted = earlier.id;
        if (!send({ type: "conversation.history", conversation: earlier.id })) {
          toast("Not connected: try again once the connection is back.");
        }
      });
      li.appendChild(button);
      panel.previous.appendChild(li);
    });
  }

  /* A read-only transcript of an earlier chat, inside the panel of the chat that asked. */
  function onConversationHistory(frame) {
    state.chats.forEach(function (chat) {
      if (chat.historyWanted !== frame.conversation) return;
      var panel = visitorPanel(chat);
      text(
        panel.historyTitle,
        "Earlier chat of " + dateLabel(frame.created_at) + " (" + frame.status + ")",
      );
      panel.historyMessages.textContent = "";
      (frame.messages || []).forEach(function (message) {
        var li = document.createElement("li");
        li.className = "visitor-history-message visitor-history-" + message.sender;
        var who = document.createElement("span");
        who.className = "visitor-history-who";
        var name = message.sender === "visitor" ? "Visitor" : message.sender === "agent" ? "Agent" : "System";
        text(who, name + " · " + clockTime(message.sent_at) + ": ");
        li.appendChild(who);
        renderBody(li, message.body);
        panel.historyMessages.appendChild(li);
      });
      panel.history.hidden = false;
    });
  }

  function onVisitorContext(frame) {
    var chat = state.chats.get(frame.conversation);
    if (chat) showVisitorContext(chat, frame.visitor_context);
  }

  // --- start --------------------------------------------------------------------

  updatePresenceControls();
  updateNotifyButton();
  refreshCounts();
  connect();
})();
