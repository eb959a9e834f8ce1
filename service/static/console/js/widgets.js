// Pieces every page shares: the page title bar, notices, the edit dialog, spend bars and charts.
import {el, fill, usd} from "./dom.js";

export function toolbar(title, ...extra) {
  return el("div", {class: "toolbar"}, el("h1", {}, title), el("div", {class: "tools"}, ...extra));
}

export function notice(tone, ...children) {
  return el("div", {class: `notice ${tone}`}, ...children);
}

/** Spend against a limit: the amounts and a bar. */
export function spendBar(used, limit) {
  const share = limit === null || limit === undefined || Number(limit) === 0 ? 0 : Math.min(1, Number(used) / Number(limit));
  const bar = el("div", {class: "bar"}, el("div", {class: share > 0.9 ? "fill hot" : "fill"}));
  bar.firstChild.style.width = `${Math.round(share * 100)}%`;
  return el("div", {class: "spend"}, el("span", {}, `${usd(used)} of ${usd(limit)}`), limit ? bar : null);
}

/** A form whose submit runs `action(form)`; the gateway's refusal is shown under it. `button` is
[label, testid] for a primary submit button. */
export function actionForm(attrs, action, children, button) {
  const message = el("p", {class: "message"});
  const form = el("form", {...attrs, onsubmit: async (event) => {
    event.preventDefault();
    fill(message);
    message.className = "message";
    try {
      await action(form);
    } catch (error) {
      message.textContent = error.message;
      message.className = "message error";
    }
  }}, ...children,
    button ? el("div", {class: "form-end"}, el("button", {type: "submit", class: "primary", "data-testid": button[1]}, button[0]))
      : null,
    message);
  return form;
}

/** A modal form; `save` runs on submit, its error shown in the dialog. */
export function dialog(title, fields, save) {
  const box = el("dialog", {class: "card"});
  const cancel = el("button", {type: "button", class: "ghost", onclick: () => box.close()}, "Cancel");
  const form = actionForm({class: "form-grid"}, async () => {
    await save();
    box.close();
  }, [el("h2", {}, title), ...fields, el("div", {class: "form-end"}, cancel,
    el("button", {type: "submit", class: "primary", "data-testid": "save"}, "Save"))]);
  box.append(form);
  box.addEventListener("close", () => box.remove());
  document.body.append(box);
  box.showModal();
}

const PALETTE = ["#4f6bed", "#20a386", "#e8a33d", "#d9534f", "#8e6bd6", "#3aa0c8", "#c7609b", "#7d8a99"];

/** A Chart.js chart (the vendored build, window.Chart) in a card; `data-points` tells tests what was drawn. */
export function chart(testid, title, type, labels, values, options = {}) {
  const canvas = el("canvas", {"data-testid": testid, role: "img", "aria-label": title});
  const card = el("div", {class: "card chart"}, el("h3", {}, title), el("div", {class: "canvas-box"}, canvas));
  if (!labels.length) {
    card.append(el("p", {class: "muted empty-chart"}, "No spend in this period."));
  }
  requestAnimationFrame(() => {
    const horizontal = options.horizontal;
    new window.Chart(canvas, {
      type,
      data: {labels, datasets: [{label: "USD", data: values, borderWidth: type === "doughnut" ? 1 : 0,
        backgroundColor: type === "bar" && !horizontal ? PALETTE[0] : labels.map((_, i) => PALETTE[i % PALETTE.length]),
        borderRadius: type === "bar" ? 3 : 0}]},
      options: {
        animation: false, responsive: true, maintainAspectRatio: false, indexAxis: horizontal ? "y" : "x",
        plugins: {legend: {display: type === "doughnut", position: "right"},
                  tooltip: {callbacks: {label: (item) => usd(item.raw)}}},
        scales: type === "doughnut" ? {} : {
          [horizontal ? "x" : "y"]: {beginAtZero: true, ticks: {callback: (value) => usd(value)}},
          [horizontal ? "y" : "x"]: {grid: {display: false}},
        },
      },
    });
    canvas.dataset.points = String(values.length);
  });
  return card;
}
