// The supervisors' page: approve and override promises, try and save targets, retry dead
// letters. Every call goes through Belofte.api (JSON + the CSRF token); texts come from
// Belofte.t (the page's ui/*.yml), never from this file.
(function () {
  "use strict";

  const page = document.getElementById("supervisor");
  if (!page) return;
  const zone = page.dataset.timezone || "Europe/Amsterdam";
  const B = window.Belofte;
  const t = (key, params) => B.t(key, params || {});
  const PREVIEW_DELAY_MS = 300;

  // -- times in the contact center's zone ----------------------------------------------------

  function zoneParts(date) {
    const parts = new Intl.DateTimeFormat("en-GB", {
      timeZone: zone, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit",
    }).formatToParts(date);
    const get = (type) => Number(parts.find((p) => p.type === type).value);
    return { y: get("year"), m: get("month"), d: get("day"), h: get("hour"), mi: get("minute"),
             s: get("second") };
  }

  // The datetime-local input holds a wall-clock time in `zone`: find the instant it names.
  // Two rounds settle the offset, also across a daylight-saving change.
  function zonedToIso(local) {
    const match = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})/.exec(local);
    if (!match) return null;
    const [y, m, d, h, mi] = match.slice(1).map(Number);
    const wanted = Date.UTC(y, m - 1, d, h, mi);
    let guess = wanted;
    for (let round = 0; round < 2; round += 1) {
      const p = zoneParts(new Date(guess));
      const shown = Date.UTC(p.y, p.m - 1, p.d, p.h, p.mi, p.s);
      guess += wanted - shown;
    }
    return new Date(guess).toISOString();
  }

  function clock(iso) {
    const p = zoneParts(new Date(iso));
    const today = zoneParts(new Date());
    const time = `${String(p.h).padStart(2, "0")}:${String(p.mi).padStart(2, "0")}`;
    const sameDay = p.y === today.y && p.m === today.m && p.d === today.d;
    return sameDay ? time : `${String(p.d).padStart(2, "0")}-${String(p.m).padStart(2, "0")} ${time}`;
  }

  function told(times) {
    if (times.deadline) return t("supervisor.preview.before", { time: clock(times.deadline) });
    return t("supervisor.preview.next_update", { time: clock(times.next_update_at) });
  }

  function showError(element, error) {
    element.textContent = error && error.message ? error.message : String(error);
    element.hidden = false;
  }

  // -- promises ------------------------------------------------------------------------------

  for (const row of page.querySelectorAll("[data-testid=outage-row]")) {
    const reference = row.dataset.reference;
    const base = `/api/v1/outages/${encodeURIComponent(reference)}/promise`;
    const error = row.querySelector("[data-testid=outage-error]");
    const approve = row.querySelector("[data-testid=approve]");
    if (approve) {
      approve.addEventListener("click", async () => {
        approve.disabled = true;
        try {
          await B.api("POST", `${base}/approve`, {});
          window.location.reload();
        } catch (err) {
          approve.disabled = false;
          showError(error, err);
        }
      });
    }
    const form = row.querySelector("form[data-action=override]");
    if (form) {
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        const when = form.querySelector("[data-testid=override-time]").value;
        const reason = form.querySelector("[data-testid=override-reason]").value.trim();
        const deadline = zonedToIso(when);
        if (!deadline) return showError(error, t("supervisor.override.time_required"));
        if (!reason) return showError(error, t("supervisor.override.reason_required"));
        const submit = form.querySelector("[data-testid=override-submit]");
        submit.disabled = true;
        try {
          await B.api("POST", `${base}/override`, { deadline, reason });
          window.location.reload();
        } catch (err) {
          submit.disabled = false;
          showError(error, err);
        }
      });
    }
  }

  // -- targets, with their effect shown before saving -----------------------------------------

  for (const row of page.querySelectorAll("[data-testid=target-row]")) {
    const service = row.dataset.service;
    const input = row.querySelector("[data-testid=target-input]");
    const preview = row.querySelector("[data-testid=target-preview]");
    const save = row.querySelector("[data-testid=target-save]");
    let timer = null;
    let asked = 0;

    // The input is a percentage (80); a fraction (0.8) is understood too.
    function chosen() {
      const value = Number(String(input.value).replace(",", "."));
      if (!input.value || !Number.isFinite(value) || value <= 0 || value >= 100) return null;
      const target = value < 1 ? value : value / 100;
      return Math.round(target * 10000) / 10000;
    }

    function render(answer) {
      preview.replaceChildren();
      preview.dataset.target = String(answer.target);
      if (!answer.outages.length) {
        preview.textContent = t("supervisor.preview.no_outages");
        return;
      }
      const list = document.createElement("ul");
      for (const item of answer.outages) {
        const line = document.createElement("li");
        line.dataset.reference = item.outage;
        const params = { outage: item.outage, old: told(item.current), new: told(item.new) };
        if (item.standing) {
          params.suggested = told(item.suggested);
          line.textContent = t(`supervisor.preview.standing_${item.standing}`, params);
        } else {
          line.textContent = t("supervisor.preview.change", params);
        }
        list.append(line);
      }
      preview.append(list);
    }

    async function ask() {
      const target = chosen();
      save.disabled = target === null || target === Number(row.dataset.target);
      if (target === null) {
        preview.textContent = t("supervisor.preview.invalid");
        preview.dataset.state = "error";
        return;
      }
      const mine = ++asked;
      preview.dataset.state = "loading";
      try {
        const answer = await B.api(
          "POST", `/api/v1/promise-targets/${encodeURIComponent(service)}/preview`, { target });
        if (mine !== asked) return; // a newer value is on its way: show that one
        render(answer);
        preview.dataset.state = "ready";
      } catch (err) {
        if (mine !== asked) return;
        preview.textContent = err.message;
        preview.dataset.state = "error";
      }
    }

    input.addEventListener("input", () => {
      window.clearTimeout(timer);
      timer = window.setTimeout(ask, PREVIEW_DELAY_MS);
    });
    save.addEventListener("click", async () => {
      const target = chosen();
      if (target === null) return;
      save.disabled = true;
      try {
        await B.api("PUT", `/api/v1/promise-targets/${encodeURIComponent(service)}`, { target });
        window.location.reload();
      } catch (err) {
        save.disabled = false;
        preview.textContent = err.message;
        preview.dataset.state = "error";
      }
    });
  }

  // -- dead letters ----------------------------------------------------------------------------

  for (const row of page.querySelectorAll("[data-testid=dead-letter-row]")) {
    const button = row.querySelector("[data-testid=dead-letter-retry]");
    const status = row.querySelector(".sv-retry-status");
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        await B.api("POST", `/api/v1/outbox/${encodeURIComponent(row.dataset.id)}/retry`);
        row.dataset.state = "retried";
        status.textContent = t("supervisor.dead.retried");
      } catch (err) {
        button.disabled = false;
        row.dataset.state = "error";
        status.textContent = err.message;
      }
    });
  }
})();
