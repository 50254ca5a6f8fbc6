// The agent console: what the customer says goes to the assistant; its reply, the next-best
// answer cards and the promise card for the outage in play come back. Talks only to the JSON
// API through window.Belofte.api (CSRF header included). Decisions that do not touch the page
// live in console_state.js.
(function () {
  "use strict";

  var B = window.Belofte;
  var S = window.BelofteConsoleState;
  var root = document.getElementById("console");
  if (!B || !S || !root) return;
  var t = B.t;

  var el = {
    chat: document.getElementById("cs-chat"),
    form: document.getElementById("cs-composer"),
    input: document.getElementById("cs-input"),
    send: document.getElementById("cs-send"),
    status: document.getElementById("cs-status"),
    meta: document.getElementById("cs-conversation-meta"),
    newButton: document.getElementById("cs-new"),
    handoffs: document.getElementById("cs-handoffs"),
    handoffsEmpty: document.getElementById("cs-handoffs-empty"),
    handoffsError: document.getElementById("cs-handoffs-error"),
    suggestions: document.getElementById("cs-suggestions"),
    suggestionsNone: document.getElementById("cs-suggestions-none"),
    template: document.getElementById("cs-suggestion-template"),
    promiseCard: document.getElementById("cs-promise-card"),
    promiseNone: document.getElementById("cs-promise-none"),
  };

  var state = {
    conversationId: "",
    // Does the conversation exist on the server (has at least one message)?
    exists: false,
    language: null,
    outage: null,
    gate: S.createCardGate(),
    // Promise reads are numbered too: an older read answering late must not win.
    promiseRead: 0,
    sending: 0,
  };

  var promisePollMs = Number(root.dataset.promisePollMs) || 15000;
  var handoffPollMs = Number(root.dataset.handoffPollMs) || 10000;

  function newId() {
    var bytes = new Uint8Array(8);
    window.crypto.getRandomValues(bytes);
    return "console-" + Array.prototype.map.call(bytes, function (b) {
      return ("0" + b.toString(16)).slice(-2);
    }).join("");
  }

  // Channels with a name in ui/*.yml; any other is shown as it is called in the API.
  var CHANNELS = ["voice", "telegram", "sms", "whatsapp", "console", "api"];

  function channelName(channel) {
    return CHANNELS.indexOf(channel) >= 0 ? t("console.channel." + channel) : channel;
  }

  // -- the open conversation -------------------------------------------------------------------

  // The feedback dialog (bot/cx) reads window.Belofte.currentConversation: the id of a
  // conversation that exists on the server, else null; and currentOutage, the outage in play.
  function publishConversation() {
    B.currentConversation = state.exists ? state.conversationId : null;
    B.currentOutage = state.exists ? state.outage : null;
    root.dataset.conversation = state.conversationId;
    root.dataset.exists = state.exists ? "true" : "false";
    document.dispatchEvent(
      new CustomEvent("belofte:conversation", { detail: { id: B.currentConversation } })
    );
    var lang = state.language ? t("console.language." + state.language) : "–";
    el.meta.textContent = t("console.conversation.meta", { id: state.conversationId, language: lang });
    if (state.exists) {
      var url = new URL(window.location.href);
      url.searchParams.set("conversation", state.conversationId);
      window.history.replaceState(null, "", url.pathname + url.search);
    }
  }

  function openConversation(id, exists) {
    state.conversationId = id;
    state.exists = exists;
    state.language = null;
    state.outage = null;
    // A conversation switch counts as a newer message: cards of the old one are dropped, and a
    // late answer from it cannot bring them back.
    state.gate.next();
    clearCards(false);
    el.chat.textContent = "";
    hidePromise();
    publishConversation();
  }

  function note(text, kind) {
    var p = document.createElement("p");
    p.className = "cs-note " + (kind || "");
    p.textContent = text;
    el.chat.appendChild(p);
    return p;
  }

  function bubble(text, direction, channel) {
    var div = document.createElement("div");
    div.className = "cs-msg cs-" + direction;
    if (direction === "out") div.setAttribute("data-testid", "bot-reply");
    else div.setAttribute("data-testid", "customer-message");
    var who = document.createElement("span");
    who.className = "cs-who";
    who.textContent = t(direction === "out" ? "console.speaker.assistant" : "console.speaker.customer");
    if (channel && channel !== "console") who.textContent += " · " + channelName(channel);
    var body = document.createElement("span");
    body.className = "cs-text";
    body.textContent = text;
    div.appendChild(who);
    div.appendChild(body);
    el.chat.appendChild(div);
    el.chat.scrollTop = el.chat.scrollHeight;
    return div;
  }

  function showHistory(history) {
    (history.messages || []).forEach(function (m) {
      bubble(m.text, m.direction === "out" ? "out" : "in", m.channel);
    });
    if (history.truncated) note(t("console.conversation.history_truncated"), "cs-quiet");
    if (history.language) state.language = history.language;
  }

  function loadConversation(id) {
    openConversation(id, false);
    return B.api("GET", "/api/v1/conversations/" + encodeURIComponent(id) + "/history?limit=200")
      .then(function (history) {
        if (state.conversationId !== id) return;
        state.exists = true;
        showHistory(history);
        publishConversation();
        refreshPromise();
      })
      .catch(function (err) {
        if (state.conversationId !== id) return;
        note(err.status === 404 ? t("console.conversation.not_found") : err.message, "cs-error");
      });
  }

  // -- sending a message -----------------------------------------------------------------------

  function setStatus(text) {
    el.status.textContent = text;
  }

  function send(text) {
    var conversation = state.conversationId;
    var seq = state.gate.next();
    var started = window.performance.now();
    clearCards(true);
    bubble(text, "in");
    setStatus(t("console.status.sending"));
    state.sending += 1;
    root.dataset.pending = String(state.sending);
    var url = "/api/v1/conversations/" + encodeURIComponent(conversation) + "/messages";
    return B.api("POST", url, { text: text, channel: "console" })
      .then(function (body) {
        if (state.conversationId !== conversation) return; // the agent moved on meanwhile
        var elapsed = Math.round(window.performance.now() - started);
        (body.replies || []).forEach(function (reply) {
          var div = bubble(reply.text, "out");
          addButtons(div, reply.buttons);
        });
        root.dataset.lastLatencyMs = String(elapsed);
        root.dataset.lastSeq = String(seq);
        setStatus(t("console.status.ready", { ms: elapsed }));
        state.language = body.language || state.language;
        state.outage = S.outageOf(body, state.outage);
        if (!state.exists) state.exists = true;
        publishConversation();
        if (state.gate.admit(seq)) showCards(body.suggestions, seq);
        refreshPromise();
      })
      .catch(function (err) {
        if (state.conversationId !== conversation) return;
        var div = bubble(err.message, "out");
        div.classList.add("cs-error");
        div.removeAttribute("data-testid");
        setStatus("");
        if (state.gate.admit(seq)) showCards([], seq);
      })
      .then(function () {
        state.sending -= 1;
        root.dataset.pending = String(state.sending);
      });
  }

  function addButtons(div, buttons) {
    if (!buttons || !buttons.length) return;
    var row = document.createElement("div");
    row.className = "cs-buttons";
    buttons.forEach(function (b) {
      var button = document.createElement("button");
      button.type = "button";
      button.className = "button-quiet";
      button.textContent = b.title;
      button.addEventListener("click", function () {
        send(b.payload);
      });
      row.appendChild(button);
    });
    div.appendChild(row);
  }

  el.form.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = el.input.value.trim();
    if (!text) return;
    el.input.value = "";
    send(text);
  });
  el.input.addEventListener("keydown", function (event) {
    // Enter sends (mid-call speed); Shift+Enter is a new line.
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      el.form.requestSubmit();
    }
  });
  el.newButton.addEventListener("click", function () {
    openConversation(newId(), false);
    el.input.focus();
  });

  // -- next-best answer cards ------------------------------------------------------------------

  function clearCards(waiting) {
    el.suggestions.textContent = "";
    el.suggestions.dataset.seq = "0";
    el.suggestionsNone.hidden = true;
    el.suggestions.setAttribute("aria-busy", waiting ? "true" : "false");
  }

  function showCards(suggestions, seq) {
    var chosen = S.cardsFor(suggestions);
    el.suggestions.textContent = "";
    el.suggestions.dataset.seq = String(seq);
    el.suggestions.setAttribute("aria-busy", "false");
    el.suggestionsNone.hidden = !chosen.abstained;
    chosen.cards.forEach(function (s) {
      el.suggestions.appendChild(card(s));
    });
  }

  function card(s) {
    var node = el.template.content.firstElementChild.cloneNode(true);
    node.dataset.id = s.id;
    node.dataset.article = s.article_id;
    node.querySelector(".cs-suggestion-title").textContent = s.title;
    node.querySelector("[data-testid=suggestion-score]").textContent = t(
      "console.suggestions.score", { score: Number(s.score).toFixed(2) }
    );
    node.querySelector("[data-testid=suggestion-answer]").textContent = s.answer;
    var source = node.querySelector("[data-testid=suggestion-source]");
    var label = t("console.suggestions.source", { title: s.title, id: s.article_id });
    if (s.url) {
      var link = document.createElement("a");
      link.href = s.url;
      link.target = "_blank";
      link.rel = "noopener";
      link.textContent = label;
      source.appendChild(link);
    } else {
      source.textContent = label;
    }
    node.querySelector("[data-testid=suggestion-passage]").textContent = s.passage || "";
    var status = node.querySelector(".cs-action-status");
    node.querySelectorAll("button[data-action]").forEach(function (button) {
      button.addEventListener("click", function () {
        var action = button.dataset.action;
        if (action === "copy") {
          copy(s.answer, status);
          return;
        }
        feedback(s, action, node, button, status);
      });
    });
    return node;
  }

  function feedback(s, event, node, button, status) {
    var conversation = state.conversationId;
    button.disabled = true;
    B.api("POST", "/api/v1/suggestions/" + encodeURIComponent(s.id) + "/feedback", {
      event: event,
      conversation_id: conversation,
      article_id: s.article_id,
      channel: "console",
    })
      .then(function () {
        status.textContent = t("console.suggestions.saved");
        if (event === "used") {
          node.dataset.used = "true";
          return; // used once is used
        }
        button.setAttribute("aria-pressed", "true");
        var other = node.querySelector(
          "[data-action=" + (event === "thumbs_up" ? "thumbs_down" : "thumbs_up") + "]"
        );
        if (other) other.setAttribute("aria-pressed", "false");
        button.disabled = false;
      })
      .catch(function (err) {
        status.textContent = err.message;
        button.disabled = false;
      });
  }

  function copy(text, status) {
    function done() {
      status.textContent = t("console.copied");
    }
    function fallback() {
      // Without the asynchronous clipboard (an older browser, no permission): the old way.
      var area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.style.position = "fixed";
      area.style.opacity = "0";
      document.body.appendChild(area);
      area.select();
      var ok = false;
      try {
        ok = document.execCommand("copy");
      } catch (err) {
        ok = false;
      }
      document.body.removeChild(area);
      status.textContent = ok ? t("console.copied") : t("console.copy_failed");
    }
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(text).then(done, fallback);
    } else {
      fallback();
    }
  }

  // -- the promise card ------------------------------------------------------------------------

  function hidePromise() {
    el.promiseCard.hidden = true;
    el.promiseNone.hidden = false;
  }

  function refreshPromise() {
    if (!state.exists) {
      hidePromise();
      return Promise.resolve();
    }
    var conversation = state.conversationId;
    var read = ++state.promiseRead;
    var url = "/api/v1/conversations/" + encodeURIComponent(conversation) + "/promise";
    if (state.outage) url += "?outage=" + encodeURIComponent(state.outage);
    return B.api("GET", url)
      .then(function (promise) {
        if (read !== state.promiseRead || conversation !== state.conversationId) return;
        showPromise(promise);
      })
      .catch(function (err) {
        if (read !== state.promiseRead) return;
        el.promiseNone.hidden = false;
        el.promiseNone.textContent = t("console.promise.error", { reason: err.message });
      });
  }

  function showPromise(p) {
    if (!p) {
      el.promiseNone.textContent = t("console.promise.none");
      hidePromise();
      return;
    }
    state.outage = p.outage;
    B.currentOutage = p.outage;
    var byId = function (id) {
      return document.getElementById(id);
    };
    byId("cs-promise-outage").textContent = t("console.promise.outage", {
      reference: p.outage, service: p.service_name, region: p.region,
    });
    var status = byId("cs-promise-status");
    status.dataset.status = p.status;
    status.textContent = t("console.promise.status." + p.status, { who: p.approved_by || "" });
    byId("cs-promise-time-label").textContent = p.deadline
      ? t("console.promise.deadline_label")
      : p.next_update_at ? t("console.promise.next_update_label") : t("console.promise.no_time");
    byId("cs-promise-time").textContent = p.clock || "";
    byId("cs-promise-target").textContent = t("console.promise.target", {
      percent: S.percent(p.target),
    });
    byId("cs-promise-evidence").textContent = p.evidence;
    var reason = byId("cs-promise-reason");
    reason.hidden = !p.reason;
    reason.textContent = p.reason ? t("console.promise.reason", { reason: p.reason }) : "";
    var tell = byId("cs-promise-customer-text");
    tell.textContent = p.customer_text;
    tell.lang = p.customer_language;
    el.promiseCard.dataset.outage = p.outage;
    el.promiseCard.hidden = false;
    el.promiseNone.hidden = true;
  }

  document.getElementById("cs-promise-copy").addEventListener("click", function () {
    copy(
      document.getElementById("cs-promise-customer-text").textContent,
      document.getElementById("cs-promise-copy-status")
    );
  });

  // -- handed-over conversations ---------------------------------------------------------------

  function waiting(seconds) {
    var w = S.waitingParts(seconds);
    return w.hours
      ? t("console.handoffs.waiting_hours", { hours: w.hours, minutes: w.minutes })
      : t("console.handoffs.waiting", { minutes: w.minutes });
  }

  function handoffItem(h) {
    var li = document.createElement("li");
    li.className = "cs-card cs-handoff";
    li.setAttribute("data-testid", "handoff-item");
    li.dataset.id = String(h.id);
    li.dataset.conversation = h.conversation_id;
    li.dataset.channel = h.channel;
    var head = document.createElement("div");
    head.className = "cs-handoff-head";
    var channel = document.createElement("span");
    channel.className = "cs-badge";
    channel.textContent = channelName(h.channel);
    var who = document.createElement("strong");
    who.textContent = h.customer || t("console.handoffs.unknown_customer");
    var wait = document.createElement("span");
    wait.className = "cs-quiet";
    wait.setAttribute("data-testid", "handoff-waiting");
    wait.textContent = waiting(h.waiting_seconds);
    head.appendChild(channel);
    head.appendChild(who);
    head.appendChild(wait);
    li.appendChild(head);
    if (h.reason) {
      var reason = document.createElement("p");
      reason.className = "cs-handoff-reason";
      reason.textContent = h.reason;
      li.appendChild(reason);
    }
    var take = document.createElement("button");
    take.type = "button";
    take.setAttribute("data-testid", "handoff-take");
    take.textContent = t("console.handoffs.take");
    take.addEventListener("click", function () {
      pickUp(h, take);
    });
    li.appendChild(take);
    return li;
  }

  function loadHandoffs() {
    return B.api("GET", "/api/v1/handoffs")
      .then(function (list) {
        el.handoffsError.hidden = true;
        el.handoffs.textContent = "";
        list.forEach(function (h) {
          el.handoffs.appendChild(handoffItem(h));
        });
        el.handoffsEmpty.hidden = list.length > 0;
      })
      .catch(function (err) {
        el.handoffsError.hidden = false;
        el.handoffsError.textContent = err.message;
      });
  }

  function pickUp(h, button) {
    button.disabled = true;
    return B.api("POST", "/api/v1/handoffs/" + h.id + "/pickup", {})
      .then(function (taken) {
        openConversation(taken.handoff.conversation_id, true);
        state.language = taken.handoff.language;
        note(t("console.conversation.picked", {
          channel: channelName(taken.handoff.channel),
          customer: taken.handoff.customer || t("console.handoffs.unknown_customer"),
        }), "cs-quiet");
        showHistory(taken.history);
        publishConversation();
        refreshPromise();
        el.input.focus();
      })
      .catch(function (err) {
        el.handoffsError.hidden = false;
        el.handoffsError.textContent = err.status === 409 ? t("console.handoffs.taken") : err.message;
      })
      .then(loadHandoffs);
  }

  // -- start ---------------------------------------------------------------------------------

  var initial = root.dataset.conversation;
  if (initial) loadConversation(initial);
  else openConversation(newId(), false);
  loadHandoffs();
  window.setInterval(refreshPromise, promisePollMs);
  window.setInterval(loadHandoffs, handoffPollMs);

  // For tests and the latency benchmark: the page's state and actions.
  window.BelofteConsole = {
    state: state,
    send: send,
    refreshPromise: refreshPromise,
    loadHandoffs: loadHandoffs,
  };
})();
