// The agent console's decisions that do not touch the page, kept apart so they can be tested
// on their own (tests/console/test_console_js.py runs them under Node): which answer may show
// its cards, which suggestions become cards, how waiting times and percentages read.
// Browser: window.BelofteConsoleState; Node: module.exports.
(function (root, factory) {
  "use strict";
  var api = factory();
  if (typeof module === "object" && module.exports) {
    module.exports = api;
  } else {
    root.BelofteConsoleState = api;
  }
})(typeof self !== "undefined" ? self : this, function () {
  "use strict";

  // Cards belong to the newest customer message of the open conversation. Every message sent
  // (and every switch to another conversation) takes the next number of a monotonic counter;
  // an answer may show its cards only while its number is still the newest. So a late answer
  // to an older message, or to another conversation, can never replace newer cards, whatever
  // order the network delivers the answers in.
  function createCardGate() {
    var latest = 0;
    var shown = 0;
    return {
      // A new customer message (or conversation): its sequence number.
      next: function () {
        latest += 1;
        return latest;
      },
      // May the answer to message `seq` show its cards now? (Records that it did.)
      admit: function (seq) {
        if (seq !== latest) return false;
        shown = seq;
        return true;
      },
      latest: function () {
        return latest;
      },
      // The sequence number of the cards on screen (0: none yet).
      shown: function () {
        return shown;
      },
    };
  }

  // The cards to show for one answer: only suggestions the retriever is confident in. When it
  // abstained (agents still get its candidates, marked confident: false) there is no card,
  // only the quiet "no confident answer" line.
  function cardsFor(suggestions) {
    var list = Array.isArray(suggestions) ? suggestions : [];
    var cards = list.filter(function (s) {
      return s && s.confident === true && typeof s.answer === "string" && s.answer !== "";
    });
    return { cards: cards, abstained: cards.length === 0 };
  }

  // Whole minutes and hours a customer has waited.
  function waitingParts(seconds) {
    var minutes = Math.max(0, Math.floor((Number(seconds) || 0) / 60));
    return { hours: Math.floor(minutes / 60), minutes: minutes % 60, total: minutes };
  }

  // 0.8 -> "80"; 0.955 -> "96" (the target probability as a whole percentage).
  function percent(probability) {
    return String(Math.round((Number(probability) || 0) * 100));
  }

  // The outage the conversation is about, from one answer: the promise told, else the outage
  // found in this turn, else the one known before.
  function outageOf(body, previous) {
    if (body && body.promise && typeof body.promise.outage === "string") return body.promise.outage;
    if (body && body.outage && typeof body.outage.reference === "string") {
      return body.outage.reference;
    }
    return previous || null;
  }

  return {
    createCardGate: createCardGate,
    cardsFor: cardsFor,
    waitingParts: waitingParts,
    percent: percent,
    outageOf: outageOf,
  };
});
