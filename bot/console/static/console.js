// The console talks to the same HTTP API as every other client.
(function () {
  const chat = document.getElementById("chat");
  const form = document.getElementById("composer");
  const input = document.getElementById("message");
  const status = document.getElementById("status");
  let conversationId = newId();

  function newId() {
    return "console-" + Math.random().toString(36).slice(2, 12);
  }

  function bubble(text, kind) {
    const div = document.createElement("div");
    div.className = "msg " + kind;
    div.textContent = text;
    chat.appendChild(div);
    chat.scrollTop = chat.scrollHeight;
    return div;
  }

  function showFacts(body) {
    document.getElementById("fact-language").textContent = body.language || "–";
    const intent = body.intent || {};
    document.getElementById("fact-intent").textContent =
      intent.name ? intent.name + " (" + (intent.confidence || 0).toFixed(2) + ")" : "–";
    document.getElementById("fact-entities").textContent =
      (body.entities || []).map((e) => e.entity + "=" + e.value).join(", ") || "–";
    const o = body.outage;
    document.getElementById("fact-outage").textContent = o
      ? o.reference + ": " + o.service + ", " + o.region + ", " + o.customers_affected + " affected"
      : "–";
  }

  async function send(text) {
    bubble(text, "user");
    status.textContent = "…";
    try {
      const response = await fetch(
        "/api/v1/conversations/" + encodeURIComponent(conversationId) + "/messages",
        {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ text: text, channel: "console" }),
        }
      );
      const body = await response.json();
      if (!response.ok) {
        const detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
        bubble(detail, "bot error");
        status.textContent = "Error " + response.status;
        return;
      }
      for (const reply of body.replies) {
        const div = bubble(reply.text, "bot");
        if (reply.buttons && reply.buttons.length) {
          const row = document.createElement("div");
          row.className = "buttons";
          for (const b of reply.buttons) {
            const button = document.createElement("button");
            button.type = "button";
            button.textContent = b.title;
            button.addEventListener("click", () => send(b.payload));
            row.appendChild(button);
          }
          div.appendChild(row);
        }
      }
      showFacts(body);
      status.textContent = "Ready";
    } catch (err) {
      bubble(String(err), "bot error");
      status.textContent = "Offline";
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    send(text);
  });

  document.getElementById("new-conversation").addEventListener("click", () => {
    conversationId = newId();
    chat.innerHTML = "";
  });
})();
