// The dashboard's entry: navigation by the URL fragment, the shared event
// feed, the confirmation dialog and the API key prompt (docs/ui.md).

import { adoptKeyFromFragment, request, setApiKey } from "./api.js";
import { h } from "./dom.js";
import { EventFeed } from "./events.js";
import { eventsView, poolsView, sandboxesView, sandboxView } from "./views.js";
import "./style.css";

const ROUTES = [
  [/^#\/?$/, sandboxesView, "sandboxes"],
  [/^#\/pools$/, poolsView, "pools"],
  [/^#\/events$/, eventsView, "events"],
  [/^#\/sandbox\/([^/]+)$/, sandboxView, "sandboxes"],
];

/** An in-page confirmation: resolves true on "Confirm". */
function confirmDialog(message) {
  return new Promise((resolve) => {
    const dialog = h("dialog", { id: "confirm" },
      h("p", {}, message),
      h("form", { method: "dialog" },
        h("button", { value: "cancel", id: "confirm-cancel" }, "Cancel"), " ",
        h("button", { value: "ok", id: "confirm-ok", class: "danger" }, "Confirm")));
    dialog.addEventListener("close", () => { resolve(dialog.returnValue === "ok"); dialog.remove(); });
    document.body.append(dialog);
    dialog.showModal();
  });
}

function askForKey(reason) {
  if (document.getElementById("login")) return;
  const input = h("input", { id: "api-key", type: "password", size: 40, autocomplete: "off" });
  const dialog = h("dialog", { id: "login" },
    h("p", {}, reason), h("p", {}, "API key: ", input),
    h("form", { method: "dialog" }, h("button", { value: "ok", id: "login-ok" }, "Use this key")));
  dialog.addEventListener("close", () => { setApiKey(input.value.trim()); dialog.remove(); location.reload(); });
  document.body.append(dialog);
  dialog.showModal();
}

async function boot() {
  adoptKeyFromFragment();
  let config = { read_only: false };
  try { config = await request("GET", "/ui/config.json"); } catch { /* defaults */ }
  document.body.classList.toggle("read-only", !!config.read_only);
  window.addEventListener("sandboxd:unauthorized", (ev) => askForKey(`The daemon asks for credentials: ${ev.detail.message}`));

  const main = h("main", { id: "view" });
  const links = { sandboxes: h("a", { href: "#/" }, "Sandboxes"), pools: h("a", { href: "#/pools" }, "Pools"), events: h("a", { href: "#/events" }, "Events") };
  document.body.append(
    h("header", {}, h("strong", {}, "sandboxd"), h("nav", {}, Object.values(links)),
      config.read_only ? h("span", { class: "badge", id: "read-only" }, "read-only") : null),
    main);

  const feed = new EventFeed();
  feed.run();
  const ctx = { feed, config, confirm: confirmDialog };
  let unmount = null;
  const show = () => {
    if (unmount) unmount();
    main.replaceChildren();
    const hash = location.hash || "#/";
    for (const [pattern, view, tab] of ROUTES) {
      const m = pattern.exec(hash);
      if (!m) continue;
      for (const [name, a] of Object.entries(links)) a.classList.toggle("current", name === tab);
      unmount = view(main, ctx, ...m.slice(1).map(decodeURIComponent));
      return;
    }
    main.append(h("p", {}, "No such page. ", h("a", { href: "#/" }, "Sandboxes")));
    unmount = null;
  };
  window.addEventListener("hashchange", show);
  show();
}

boot();
