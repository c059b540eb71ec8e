/**
 * The playground page served at `/`: chat with streaming and a stop button,
 * image generation with a progress bar and the result grid, and the memory
 * ledger (GET /v1/ledger). One static page (no build step, no outside
 * resources), talking to the same endpoints as any client; the API key, when
 * the server has one, is typed into the page and kept in localStorage.
 */
export const PLAYGROUND_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>genai-native playground</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 0; display: grid; grid-template-columns: 1fr 1fr; gap: 16px; padding: 16px; background: #f6f6f4; color: #222; }
  section { background: #fff; border: 1px solid #ddd; border-radius: 8px; padding: 12px; }
  h1 { grid-column: 1 / -1; font-size: 18px; margin: 0; }
  h2 { font-size: 15px; margin: 0 0 8px; }
  #log { height: 320px; overflow-y: auto; border: 1px solid #eee; padding: 8px; white-space: pre-wrap; }
  .user { color: #245; margin: 4px 0; } .assistant { color: #222; margin: 4px 0 10px; } .reasoning { color: #888; font-style: italic; }
  .error { color: #b00; }
  textarea, input, select { font: inherit; box-sizing: border-box; }
  textarea { width: 100%; height: 60px; margin-top: 8px; }
  progress { width: 100%; }
  #grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(128px, 1fr)); gap: 8px; margin-top: 8px; }
  #grid img { width: 100%; image-rendering: pixelated; border: 1px solid #ddd; }
  table { border-collapse: collapse; width: 100%; } td, th { border-bottom: 1px solid #eee; padding: 2px 6px; text-align: left; }
  #ledger-section { grid-column: 1 / -1; }
</style>
</head>
<body>
<h1>genai-native playground <small><label>API key <input id="key" type="password" size="16"></label></small></h1>
<section>
  <h2>Chat <select id="model"></select></h2>
  <div id="log"></div>
  <textarea id="prompt" placeholder="Say something"></textarea>
  <button id="send">Send</button> <button id="stop" disabled>Stop</button> <button id="clear">Clear</button>
</section>
<section>
  <h2>Images</h2>
  <input id="image-prompt" placeholder="a lighthouse at dusk" size="40">
  <label>n <input id="image-n" type="number" min="1" max="5" value="1" style="width:3em"></label>
  <label>size <select id="image-size"><option>512x512</option><option>256x256</option><option>64x64</option></select></label>
  <label>steps <input id="image-steps" type="number" min="1" max="200" value="20" style="width:4em"></label>
  <button id="generate">Generate</button> <button id="cancel" disabled>Cancel</button>
  <div><progress id="image-progress" max="100" value="0"></progress> <span id="image-status"></span></div>
  <div id="grid"></div>
</section>
<section id="ledger-section">
  <h2>Devices and memory</h2>
  <table><thead><tr><th>device</th><th>budget</th><th>used</th><th>holders</th></tr></thead><tbody id="ledger"></tbody></table>
</section>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const keyInput = $("key");
keyInput.value = localStorage.getItem("genai-native-key") || "";
keyInput.onchange = () => {
  localStorage.setItem("genai-native-key", keyInput.value);
  loadModels();
  ledger();
};
const headers = () => Object.assign({ "content-type": "application/json" }, keyInput.value ? { authorization: "Bearer " + keyInput.value } : {});
const mib = (b) => b === null ? "∞" : (b / 1048576).toFixed(0) + " MiB";

/** Reads server-sent events from a fetch response; calls onEvent(name, data) for each. */
async function readEvents(res, onEvent) {
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    buf += decoder.decode(value, { stream: true });
    let at;
    while ((at = buf.indexOf("\\n\\n")) >= 0) {
      const block = buf.slice(0, at);
      buf = buf.slice(at + 2);
      let name = "message", data = "";
      for (const line of block.split("\\n")) {
        if (line.startsWith("event: ")) name = line.slice(7);
        else if (line.startsWith("data: ")) data += line.slice(6);
      }
      onEvent(name, data);
    }
  }
}

async function errorText(res) {
  try { return (await res.json()).error.message; } catch { return res.status + " " + res.statusText; }
}

// --- chat
const messages = [];
let chatAbort = null;
function line(cls, text) {
  const div = document.createElement("div");
  div.className = cls;
  div.textContent = text;
  $("log").appendChild(div);
  $("log").scrollTop = $("log").scrollHeight;
  return div;
}
async function loadModels() {
  const res = await fetch("/v1/models", { headers: headers() });
  if (!res.ok) return line("error", await errorText(res));
  $("model").innerHTML = "";
  for (const m of (await res.json()).data) $("model").add(new Option(m.id, m.id));
}
$("send").onclick = async () => {
  const text = $("prompt").value.trim();
  if (!text) return;
  $("prompt").value = "";
  messages.push({ role: "user", content: text });
  line("user", "> " + text);
  const out = line("assistant", "");
  let reasoning = null, content = "";
  chatAbort = new AbortController();
  $("send").disabled = true;
  $("stop").disabled = false;
  try {
    const res = await fetch("/v1/chat/completions", {
      method: "POST", headers: headers(), signal: chatAbort.signal,
      body: JSON.stringify({ model: $("model").value, messages, stream: true }),
    });
    if (!res.ok) throw new Error(await errorText(res));
    await readEvents(res, (_name, data) => {
      if (data === "[DONE]") return;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message);
      const delta = (chunk.choices[0] || {}).delta || {};
      if (delta.reasoning_content) {
        reasoning = reasoning || out.insertAdjacentElement("beforebegin", Object.assign(document.createElement("div"), { className: "reasoning" }));
        reasoning.textContent += delta.reasoning_content;
      }
      if (delta.content) { content += delta.content; out.textContent = content; }
    });
  } catch (e) {
    if (e.name !== "AbortError") line("error", String(e.message || e));
  } finally {
    messages.push({ role: "assistant", content });
    chatAbort = null;
    $("send").disabled = false;
    $("stop").disabled = true;
  }
};
$("stop").onclick = () => chatAbort && chatAbort.abort();
$("clear").onclick = () => { messages.length = 0; $("log").innerHTML = ""; };
$("prompt").onkeydown = (e) => { if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("send").click(); } };

// --- images
let imageJob = null;
$("generate").onclick = async () => {
  $("grid").innerHTML = "";
  $("image-status").textContent = "queued";
  const res = await fetch("/v1/images/generations", {
    method: "POST", headers: headers(),
    body: JSON.stringify({ prompt: $("image-prompt").value || "a lighthouse at dusk", n: Number($("image-n").value), size: $("image-size").value, steps: Number($("image-steps").value), preview: true }),
  });
  if (!res.ok) { $("image-status").textContent = await errorText(res); return; }
  imageJob = (await res.json()).id;
  $("generate").disabled = true;
  $("cancel").disabled = false;
  const events = await fetch("/v1/images/generations/" + imageJob + "/events", { headers: headers() });
  await readEvents(events, (name, data) => {
    const v = JSON.parse(data);
    if (name === "progress") {
      $("image-progress").value = v.percent;
      $("image-status").textContent = v.stage + " — image " + (v.imageIndex + 1) + "/" + v.imageCount + ", step " + v.step + "/" + v.steps + (v.etaMs !== undefined ? ", " + (v.etaMs / 1000).toFixed(1) + " s left" : "");
    } else if (name === "preview") {
      // the sampling's latest preview, in the grid slot of the image it belongs to
      let el = $("grid").children[v.image_index];
      while (!el) { $("grid").appendChild(document.createElement("img")); el = $("grid").children[v.image_index]; }
      el.src = "data:image/png;base64," + v.b64_png;
      el.title = "preview, step " + v.step;
      el.className = "preview";
    } else if (name === "end") {
      $("grid").innerHTML = "";
      $("image-status").textContent = v.status + (v.error ? ": " + v.error.message : "");
      if (v.status === "done") $("image-progress").value = 100;
      for (const img of (v.result && v.result.images) || []) {
        const el = document.createElement("img");
        el.src = "data:image/png;base64," + img.b64_json;
        el.title = "seed " + img.seed;
        $("grid").appendChild(el);
      }
    }
  });
  imageJob = null;
  $("generate").disabled = false;
  $("cancel").disabled = true;
};
$("cancel").onclick = () => imageJob && fetch("/v1/images/generations/" + imageJob, { method: "DELETE", headers: headers() });

// --- ledger
async function ledger() {
  const res = await fetch("/v1/ledger", { headers: headers() });
  if (!res.ok) return;
  $("ledger").innerHTML = "";
  for (const d of (await res.json()).devices) {
    const tr = document.createElement("tr");
    for (const cell of [d.device, mib(d.budget), mib(d.used), d.holders.map((h) => h.id + " " + h.kind + " " + mib(h.bytes)).join(", ")]) {
      const td = document.createElement("td");
      td.textContent = cell;
      tr.appendChild(td);
    }
    $("ledger").appendChild(tr);
  }
}
loadModels();
ledger();
setInterval(ledger, 2000);
</script>
</body>
</html>
`;
