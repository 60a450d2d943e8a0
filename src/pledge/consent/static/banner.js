/* Pledge cookie banner. Served by Pledge; no dependencies, nothing fetched from elsewhere.
 *
 * Embed:  <script src="https://privacy.example.com/consent/banner.js" defer></script>
 * Gate a non-essential tag by its cookie category; it runs only once the visitor allows it:
 *         <script type="text/plain" data-pledge-category="analytics" src="/a.js"></script>
 * API:    pledgeConsent.open() reopens the banner (a "Cookie choices" link);
 *         pledgeConsent.choices() gives {category: true|false}, or null before a choice.
 *         A "pledge:consent" event is dispatched on window whenever a choice applies.
 */
(() => {
  "use strict";
  const script = document.currentScript;
  if (!script || window.pledgeConsent) return;
  const base = new URL(".", script.src);
  const gpcOn = navigator.globalPrivacyControl === true;
  const active = new Set();
  let config = null;
  let record = null;
  let host = null;

  function readRecord(name) {
    const prefix = name + "=";
    const entry = document.cookie.split("; ").find((c) => c.startsWith(prefix));
    if (!entry) return null;
    try {
      const value = JSON.parse(decodeURIComponent(entry.slice(prefix.length)));
      return value && typeof value.choices === "object" ? value : null;
    } catch {
      return null;
    }
  }

  function writeRecord() {
    const { cookie: name, max_age_days: days } = config.storage;
    let cookie = `${name}=${encodeURIComponent(JSON.stringify(record))}; Path=/; SameSite=Lax`;
    if (days) cookie += `; Max-Age=${days * 86400}`;
    if (location.protocol === "https:") cookie += "; Secure";
    document.cookie = cookie;
  }

  function current() {
    return record && record.policy_version === config.policy_version ? record.choices : null;
  }

  function allowed(category) {
    const choices = current();
    return Boolean(choices && choices[category] === true);
  }

  function forcedByGpc(category) {
    return gpcOn && config.honors_gpc && category.sale_or_sharing;
  }

  // A gated tag becomes a real script element: only then does the browser fetch or run it.
  function activate() {
    const gated = document.querySelectorAll('script[type="text/plain"][data-pledge-category]');
    for (const tag of gated) {
      const category = tag.dataset.pledgeCategory;
      if (!allowed(category)) continue;
      const real = document.createElement("script");
      for (const { name, value } of tag.attributes) {
        if (name !== "type") real.setAttribute(name, value);
      }
      if (tag.dataset.pledgeType) real.type = tag.dataset.pledgeType;
      if (tag.nonce) real.nonce = tag.nonce;
      if (!tag.hasAttribute("async")) real.async = false;
      if (!tag.hasAttribute("src")) real.textContent = tag.textContent;
      tag.replaceWith(real);
      active.add(category);
    }
  }

  // The site's own cookies of a refused category go (cookies of other sites cannot be reached).
  function clearRefused() {
    const domains = location.hostname.split(".").map((_, i, parts) => parts.slice(i).join("."));
    for (const category of config.categories) {
      if (!category.can_refuse || allowed(category.key)) continue;
      for (const name of category.cookies) {
        document.cookie = `${name}=; Max-Age=0; Path=/`;
        for (const domain of domains.slice(0, -1)) {
          document.cookie = `${name}=; Max-Age=0; Path=/; Domain=${domain}`;
        }
      }
    }
  }

  function apply() {
    clearRefused();
    activate();
    window.dispatchEvent(new CustomEvent("pledge:consent", { detail: { ...current() } }));
  }

  async function choose(choices, prompted) {
    const response = await fetch(new URL("cookies", base), {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        consent_id: record ? record.consent_id : null,
        choices,
        gpc: gpcOn,
        policy_version: config.policy_version,
        prompted,
      }),
    });
    if (response.status === 409) {
      // The policy changed while the banner was open: show the new version's banner.
      await loadConfig();
      await show(true);
      return;
    }
    if (!response.ok) throw new Error(`Pledge answered ${response.status}`);
    const answer = await response.json();
    const withdrawn = [...active].some((category) => answer.choices[category] !== true);
    record = {
      consent_id: answer.consent_id,
      policy_version: answer.policy_version,
      choices: answer.choices,
    };
    writeRecord();
    close();
    // A tag that already ran cannot be stopped; a reload is the only way to honor a withdrawal.
    if (withdrawn) location.reload();
    else apply();
  }

  async function ledgerState() {
    if (!record || !record.consent_id) return null;
    try {
      const response = await fetch(new URL(`cookies/${record.consent_id}`, base));
      return response.ok ? await response.json() : null;
    } catch {
      return null;
    }
  }

  const STYLE = `
    dialog { position: fixed; inset: auto 1rem 1rem; margin: 0 auto; max-width: 40rem;
      max-height: calc(100vh - 2rem); overflow: auto; box-sizing: border-box; padding: 1.25rem;
      border: 1px solid #555; border-radius: 0.5rem; background: #fff; color: #111;
      font: 15px/1.45 system-ui, sans-serif; box-shadow: 0 0.25rem 1.5rem rgb(0 0 0 / 30%);
      z-index: 2147483647; }
    h2 { font-size: 1.15rem; margin: 0 0 0.5rem; }
    p { margin: 0 0 0.75rem; }
    fieldset { border: 0; margin: 0 0 0.75rem; padding: 0; }
    legend { font-weight: 600; padding: 0; margin-bottom: 0.25rem; }
    .category { padding: 0.4rem 0; border-top: 1px solid #ddd; }
    .category label { font-weight: 600; display: flex; gap: 0.5rem; align-items: center; }
    .category p, .note { margin: 0.15rem 0 0 1.6rem; font-size: 0.9rem; color: #333; }
    .gpc { padding: 0.5rem 0.75rem; background: #eef6ee; border-left: 4px solid #2d6a2d; }
    .error { color: #a00; }
    .actions { display: flex; flex-wrap: wrap; gap: 0.5rem; align-items: center; }
    button { font: inherit; padding: 0.45rem 0.9rem; border-radius: 0.3rem; cursor: pointer;
      border: 1px solid #111; background: #111; color: #fff; }
    button.secondary { background: #fff; color: #111; }
    :focus-visible { outline: 3px solid #1a5fb4; outline-offset: 2px; }
    a { color: #1a5fb4; margin-left: auto; }`;

  function element(tag, attributes = {}, text = "") {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
    if (text) node.textContent = text;
    return node;
  }

  function close() {
    if (host) host.remove();
    host = null;
  }

  async function show(prompted) {
    const ledger = await ledgerState();
    const previous = (ledger && ledger.choices) || (record && record.choices) || {};
    const blocked = (prompted && ledger && ledger.reprompt_blocked_until) || {};
    close();
    host = element("div", { "data-pledge-banner": "" });
    const root = host.attachShadow({ mode: "open" });
    const sheet = element("style", {}, STYLE);
    const [heading, intro] = config.notice.split("\n");
    const dialog = element("dialog", {
      "aria-labelledby": "pledge-heading",
      "aria-describedby": "pledge-intro",
    });
    dialog.append(element("h2", { id: "pledge-heading" }, heading));
    dialog.append(element("p", { id: "pledge-intro" }, intro));
    const gpcNote = config.categories.some(forcedByGpc)
      ? element(
          "p",
          { class: "gpc", id: "pledge-gpc", role: "status" },
          "Opt-out request honored: your browser's Global Privacy Control signal turns off " +
            "the categories that sell or share your data.",
        )
      : null;
    if (gpcNote) dialog.append(gpcNote);
    const fieldset = element("fieldset");
    fieldset.append(element("legend", {}, "Your choices"));
    const boxes = new Map();
    for (const category of config.categories) {
      const id = `pledge-category-${category.key}`;
      const row = element("div", { class: "category" });
      const label = element("label", { for: id });
      const box = element("input", {
        type: "checkbox",
        id,
        "aria-describedby": `${id}-description`,
      });
      label.append(box, document.createTextNode(category.name));
      row.append(label, element("p", { id: `${id}-description` }, category.description));
      if (!category.can_refuse) {
        box.checked = true;
        box.disabled = true;
        row.append(element("p", { class: "note" }, "Always on: the site needs these."));
      } else if (forcedByGpc(category)) {
        box.disabled = true;
        box.setAttribute("aria-describedby", `${id}-description pledge-gpc`);
      } else if (blocked[category.key]) {
        box.disabled = true;
        row.append(
          element("p", { class: "note" }, "Off, as you chose. Reopen cookie choices to change it."),
        );
      } else if (category.key in previous) {
        box.checked = previous[category.key] === true;
      } else {
        box.checked = category.consent === "opt_out";
      }
      boxes.set(category.key, box);
      fieldset.append(row);
    }
    dialog.append(fieldset);
    const error = element("p", { class: "error", role: "alert" });
    const actions = element("div", { class: "actions" });
    const accept = element("button", { type: "button" }, "Accept all");
    const reject = element("button", { type: "button" }, "Reject non-essential");
    const save = element("button", { type: "button", class: "secondary" }, "Save choices");
    const policy = element("a", { href: config.privacy_policy_url }, "Privacy policy");
    actions.append(accept, reject, save, policy);
    dialog.append(actions, error);

    const submit = (pick) => async () => {
      const choices = {};
      for (const category of config.categories) {
        const box = boxes.get(category.key);
        choices[category.key] = box.disabled ? box.checked : pick(category, box);
      }
      error.textContent = "";
      try {
        await choose(choices, prompted);
      } catch {
        error.textContent = "Your choice could not be saved. Please try again.";
      }
    };
    accept.addEventListener("click", submit(() => true));
    reject.addEventListener("click", submit(() => false));
    save.addEventListener("click", submit((_, box) => box.checked));

    root.append(sheet, dialog);
    document.body.append(host);
    dialog.show();
  }

  async function loadConfig() {
    const response = await fetch(new URL("cookies/config", base));
    if (!response.ok) throw new Error(`Pledge answered ${response.status}`);
    config = await response.json();
  }

  async function start() {
    // Until the configuration arrives nothing gated runs; if it never does, nothing ever runs.
    await loadConfig();
    record = readRecord(config.storage.cookie);
    if (document.readyState === "loading") {
      await new Promise((done) => document.addEventListener("DOMContentLoaded", done));
    }
    const choices = current();
    if (!choices) return show(true);
    const stale = config.categories.some((c) => forcedByGpc(c) && choices[c.key] === true);
    // A GPC signal that arrived since the choice is recorded without asking anything.
    return stale ? choose({ ...choices }, false) : apply();
  }

  const ready = start().catch(() => {});
  window.pledgeConsent = Object.freeze({
    open: () => ready.then(() => config && show(false)),
    choices: () => (config && current() ? { ...current() } : null),
    ready,
  });
})();
