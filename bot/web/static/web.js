// Shared browser code of every Belofte page: window.Belofte = {api, t, lang, user, csrfToken}.
// Loaded (without defer) from base.html's <head>, so page scripts can rely on it.
(function () {
  "use strict";

  function readJson(id, fallback) {
    var el = document.getElementById(id);
    if (!el) return fallback;
    try {
      return JSON.parse(el.textContent || "null") || fallback;
    } catch (err) {
      console.error("Belofte: unreadable #" + id, err);
      return fallback;
    }
  }

  var texts = readJson("ui-texts", {});
  var context = readJson("belofte-context", { lang: "nl", user: null });

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") || "" : "";
  }

  // t("cx.state.triaged") or t("web.error.http", {status: 500}); a missing key is logged loudly
  // and shown as the key itself, so it is noticed without breaking the page.
  function t(key, params) {
    var text = Object.prototype.hasOwnProperty.call(texts, key) ? texts[key] : null;
    if (text === null) {
      console.error("Belofte: missing interface text " + key);
      text = key;
    }
    if (params) {
      text = text.replace(/\{(\w+)\}/g, function (whole, name) {
        return Object.prototype.hasOwnProperty.call(params, name) ? String(params[name]) : whole;
      });
    }
    return text;
  }

  function detailOf(data, status) {
    if (data && typeof data.detail === "string") return data.detail;
    if (data && Array.isArray(data.detail)) {
      return data.detail
        .map(function (d) { return d && d.msg ? d.msg : JSON.stringify(d); })
        .join("; ");
    }
    if (status === 401) return t("web.error.session");
    return t("web.error.http", { status: status });
  }

  // api("POST", "/api/v1/feedback", {...}) -> Promise of the JSON answer (null for no body).
  // Sends the session's CSRF token; rejects with an Error carrying the server's detail,
  // plus .status and .data.
  function api(method, url, body) {
    var headers = { Accept: "application/json", "X-CSRF-Token": csrfToken() };
    var init = { method: method, headers: headers, credentials: "same-origin" };
    if (body !== undefined && body !== null) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(url, init).then(
      function (response) {
        var type = response.headers.get("Content-Type") || "";
        var parse = response.status === 204
          ? Promise.resolve(null)
          : type.indexOf("json") >= 0
            ? response.json().catch(function () { return null; })
            : response.text().then(function () { return null; });
        return parse.then(function (data) {
          if (!response.ok) {
            var error = new Error(detailOf(data, response.status));
            error.status = response.status;
            error.data = data;
            throw error;
          }
          return data;
        });
      },
      function () {
        var error = new Error(t("web.error.network"));
        error.status = 0;
        throw error;
      }
    );
  }

  window.Belofte = Object.assign(window.Belofte || {}, {
    api: api,
    t: t,
    lang: context.lang || document.documentElement.lang || "nl",
    user: context.user || null,
    csrfToken: csrfToken
  });
})();
