// The chat page's script: opens a WebSocket at this page's own mount and shows what the room says.
// Messages are written with textContent, never innerHTML: what others type is text, not markup.
"use strict";

const CLOSE_REASONS = {
  1001: "the portal is restarting",
  1009: "that message was too long",
  4401: "your session ended: sign in again",
  4403: "your account no longer has access to this product",
  4408: "closed after a while without messages: reload to reconnect",
};

function start() {
  const list = document.getElementById("messages");
  const form = document.getElementById("send");
  const input = document.getElementById("text");
  const status = document.getElementById("status");
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const socket = new WebSocket(scheme + "//" + location.host + list.dataset.socket);

  function add(from, text, kind) {
    const item = document.createElement("li");
    item.className = kind;
    if (from) {
      const who = document.createElement("span");
      who.className = "from";
      who.textContent = from;
      item.appendChild(who);
    }
    item.appendChild(document.createTextNode(text));
    list.appendChild(item);
    list.scrollTop = list.scrollHeight;
  }

  socket.addEventListener("open", () => {
    status.textContent = "connected";
  });
  socket.addEventListener("message", (event) => {
    const message = JSON.parse(event.data);
    if (message.kind === "said") {
      add(message.from, message.text, "said");
    } else {
      add("", message.from + " " + message.kind, "note");
    }
  });
  socket.addEventListener("close", (event) => {
    status.textContent = "disconnected: " + (CLOSE_REASONS[event.code] || "code " + event.code);
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (socket.readyState === WebSocket.OPEN && input.value.trim()) {
      socket.send(input.value);
      input.value = "";
    }
  });
}

document.addEventListener("DOMContentLoaded", start);
