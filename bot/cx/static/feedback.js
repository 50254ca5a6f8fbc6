// The "Feedback to CX" dialog on every page (template: bot/cx/templates/feedback_dialog.html).
// "Sent" is shown only once the server answered 201 (the observation is stored by then); on
// any error the text stays in the box so nothing is lost. A page with an open conversation
// sets window.Belofte.currentConversation (the console does); the dialog then offers to tie
// the observation to it (and to window.Belofte.currentOutage, the outage in play, if set).
(function () {
  "use strict";

  var B = window.Belofte || {};
  var t = B.t || function (key) { return key; };

  function csrfToken() {
    if (B.csrfToken) return B.csrfToken();
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") || "" : "";
  }

  function detailOf(data, status) {
    if (data && typeof data.detail === "string") return data.detail;
    if (data && Array.isArray(data.detail)) {
      return data.detail.map(function (d) { return d && d.msg ? d.msg : String(d); }).join("; ");
    }
    if (status === 401) return t("web.error.session");
    return t("web.error.http", { status: status });
  }

  function init() {
    var dialog = document.getElementById("feedback-dialog");
    var opener = document.getElementById("feedback-open");
    if (!dialog || !opener) return;
    var form = document.getElementById("feedback-form");
    var text = document.getElementById("feedback-text");
    var category = document.getElementById("feedback-category");
    var conversationRow = document.getElementById("feedback-conversation-row");
    var conversationBox = document.getElementById("feedback-conversation");
    var conversationId = document.getElementById("feedback-conversation-id");
    var anonymous = document.getElementById("feedback-anonymous");
    var status = dialog.querySelector('[data-testid="feedback-status"]');
    var send = document.getElementById("feedback-send");
    var close = document.getElementById("feedback-close");
    var busy = false;

    function setStatus(state, message) {
      status.setAttribute("data-state", state);
      status.textContent = message || "";
    }

    function currentConversation() {
      var id = (window.Belofte || {}).currentConversation;
      return typeof id === "string" && id ? id : null;
    }

    opener.addEventListener("click", function () {
      var conversation = currentConversation();
      conversationRow.hidden = !conversation;
      conversationId.textContent = conversation || "";
      if (!busy) setStatus("idle", "");
      if (typeof dialog.showModal === "function") {
        dialog.showModal();
      } else {
        dialog.setAttribute("open", "");
      }
      text.focus();
    });

    // A new text after "sent": the old confirmation no longer applies to what is in the box.
    text.addEventListener("input", function () {
      if (!busy && status.getAttribute("data-state") === "sent") setStatus("idle", "");
    });

    close.addEventListener("click", function () {
      if (typeof dialog.close === "function") dialog.close(); else dialog.removeAttribute("open");
    });

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (busy) return;
      var value = text.value.trim();
      if (!value) {
        setStatus("error", t("cx.feedback.empty"));
        text.focus();
        return;
      }
      var body = { text: value, category: category.value, anonymous: anonymous.checked };
      var conversation = currentConversation();
      if (conversation && conversationBox.checked) {
        body.conversation_id = conversation;
        var outage = (window.Belofte || {}).currentOutage;
        if (typeof outage === "string" && outage) body.outage_reference = outage;
      }
      busy = true;
      send.disabled = true;
      setStatus("sending", t("cx.feedback.sending"));
      fetch("/api/v1/feedback", {
        method: "POST",
        credentials: "same-origin",
        headers: {
          "Content-Type": "application/json",
          Accept: "application/json",
          "X-CSRF-Token": csrfToken()
        },
        body: JSON.stringify(body)
      }).then(function (response) {
        return response.json().catch(function () { return null; }).then(function (data) {
          if (response.status !== 201) throw new Error(detailOf(data, response.status));
          return data;
        });
      }, function () {
        throw new Error(t("web.error.network"));
      }).then(function () {
        // Stored: only now is the text cleared and "sent" shown.
        text.value = "";
        anonymous.checked = false;
        setStatus("sent", t("cx.feedback.sent"));
      }, function (error) {
        setStatus("error", t("cx.feedback.error", { reason: error.message }));
      }).then(function () {
        busy = false;
        send.disabled = false;
      });
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
