// The CX inbox (/cx): state changes and comments per observation, retrying failed webhook
// forwards, and the themes (fetched after the page shows: they may need new vectors).
(function () {
  "use strict";

  var B = window.Belofte;

  function rowOf(element) {
    return element.closest('[data-testid="observation-row"]');
  }

  function rowStatus(row, state, message) {
    var status = row.querySelector('[data-testid="observation-status"]');
    status.setAttribute("data-state", state);
    status.textContent = message;
  }

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) { node.setAttribute(name, attrs[name]); });
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function localTime(iso) {
    var d = new Date(iso);
    function two(n) { return (n < 10 ? "0" : "") + n; }
    return d.getFullYear() + "-" + two(d.getMonth() + 1) + "-" + two(d.getDate()) + " " +
      two(d.getHours()) + ":" + two(d.getMinutes());
  }

  // -- state: saved on change; the row's data-state follows only once the server accepted it.
  function onStateChange(select) {
    var row = rowOf(select);
    var id = row.getAttribute("data-id");
    var wanted = select.value;
    select.disabled = true;
    B.api("PATCH", "/api/v1/cx/observations/" + encodeURIComponent(id), { state: wanted })
      .then(function (observation) {
        row.setAttribute("data-state", observation.state);
        select.setAttribute("data-saved", observation.state);
        select.value = observation.state;
        var history = row.querySelector('[data-testid="observation-history"]');
        history.textContent = "";
        observation.changes.forEach(function (c) {
          history.appendChild(el("li", {}, B.t("cx.history.change", {
            who: c.by, from: B.t("cx.state." + c.from), to: B.t("cx.state." + c.to),
            when: localTime(c.at)
          })));
        });
        rowStatus(row, "saved", B.t("cx.saved"));
      }, function (error) {
        select.value = select.getAttribute("data-saved");
        rowStatus(row, "error", B.t("cx.error.save", { reason: error.message }));
      })
      .then(function () { select.disabled = false; });
  }

  // -- comments: the text stays in the box until the server stored it.
  function onCommentAdd(button) {
    var row = rowOf(button);
    var input = row.querySelector('[data-testid="observation-comment-input"]');
    var text = input.value.trim();
    if (!text) { input.focus(); return; }
    button.disabled = true;
    B.api("POST", "/api/v1/cx/observations/" + encodeURIComponent(row.getAttribute("data-id")) +
      "/comments", { text: text })
      .then(function (comment) {
        var list = row.querySelector('[data-testid="observation-comments"]');
        var item = el("li", { "data-testid": "observation-comment" });
        item.appendChild(el("span", { class: "muted" },
          B.t("cx.comment.by", { who: comment.author, when: localTime(comment.created_at) })));
        item.appendChild(document.createTextNode(" " + comment.text));
        list.appendChild(item);
        input.value = "";
        rowStatus(row, "saved", B.t("cx.saved"));
      }, function (error) {
        rowStatus(row, "error", B.t("cx.error.save", { reason: error.message }));
      })
      .then(function () { button.disabled = false; });
  }

  // -- themes
  function renderThemes(report) {
    var list = document.getElementById("cx-themes");
    var status = document.getElementById("cx-themes-status");
    list.textContent = "";
    if (!report.themes.length) {
      status.setAttribute("data-state", "empty");
      status.textContent = B.t("cx.themes.none");
      return;
    }
    status.setAttribute("data-state", "ready");
    status.textContent = report.unclustered
      ? B.t("cx.themes.unclustered", { count: report.unclustered }) : "";
    report.themes.forEach(function (theme) {
      var item = el("li", {
        class: "cx-theme" + (theme.single_source ? " cx-theme-single" : ""),
        "data-testid": "theme-row",
        "data-count": String(theme.count),
        "data-sources": String(theme.sources),
        "data-growing": String(theme.growing),
        "data-single-source": String(theme.single_source)
      });
      var head = el("div", { class: "cx-theme-head" });
      head.appendChild(el("strong", { "data-testid": "theme-label" }, theme.label));
      head.appendChild(el("span", { class: "cx-theme-count" },
        B.t("cx.themes.count", { count: theme.count })));
      if (theme.growing) {
        head.appendChild(el("span", { class: "cx-badge cx-badge-growing", "data-testid": "theme-growing" },
          B.t("cx.themes.growing")));
      }
      item.appendChild(head);
      item.appendChild(el("p", { class: "muted" }, B.t("cx.themes.voices", {
        authors: theme.authors, conversations: theme.conversations, voices: theme.sources
      })));
      if (theme.single_source) {
        item.appendChild(el("p", { class: "cx-single", "data-testid": "theme-single-source" },
          B.t("cx.themes.single_source")));
      }
      var example = el("p", { class: "cx-theme-example" });
      example.appendChild(el("span", { class: "muted" }, B.t("cx.themes.example") + ": "));
      var link = el("a", { href: "#observation-" + theme.example_id }, theme.example);
      example.appendChild(link);
      item.appendChild(example);
      item.appendChild(trendChart(theme.weekly));
      list.appendChild(item);
    });
  }

  function trendChart(weekly) {
    // A small bar per week (oldest first); its title and the aria-label carry the numbers.
    var max = Math.max.apply(null, weekly.concat([1]));
    var chart = el("div", {
      class: "cx-trend", "data-testid": "theme-trend", role: "img",
      "aria-label": B.t("cx.themes.trend") + ": " + weekly.join(", ")
    });
    weekly.forEach(function (count) {
      var bar = el("span", { class: "cx-trend-bar", title: String(count) });
      bar.style.height = Math.max(2, Math.round(28 * count / max)) + "px";
      chart.appendChild(bar);
    });
    return chart;
  }

  function loadThemes() {
    B.api("GET", "/api/v1/cx/themes").then(renderThemes, function (error) {
      var status = document.getElementById("cx-themes-status");
      status.setAttribute("data-state", "error");
      status.textContent = B.t("cx.themes.error", { reason: error.message });
    });
  }

  function init() {
    var page = document.getElementById("cx");
    if (!page) return;
    page.addEventListener("change", function (event) {
      if (event.target.matches('[data-testid="observation-state-select"]')) {
        onStateChange(event.target);
      }
    });
    page.addEventListener("click", function (event) {
      var button = event.target.closest('[data-testid="observation-comment-add"]');
      if (button) onCommentAdd(button);
    });
    page.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && event.target.matches('[data-testid="observation-comment-input"]')) {
        event.preventDefault();
        onCommentAdd(rowOf(event.target).querySelector('[data-testid="observation-comment-add"]'));
      }
    });
    var retry = document.getElementById("cx-forwards-retry");
    if (retry) {
      retry.addEventListener("click", function () {
        retry.disabled = true;
        B.api("POST", "/api/v1/cx/forwards/retry").then(function (answer) {
          document.getElementById("cx-forwards-message").textContent =
            B.t("cx.forwards.retried", { count: answer.retried });
        }, function (error) {
          retry.disabled = false;
          document.getElementById("cx-forwards-message").textContent =
            B.t("cx.error.save", { reason: error.message });
        });
      });
    }
    loadThemes();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
