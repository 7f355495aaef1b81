/* Handing a chat to a colleague or back to the queue: the pane's transfer panel, filled
 * from `agents` with who is online and whether they are free, away or full. The chat
 * ends here when the server says it was transferred (chats.js, onTransferred). */

import { part, t, text, toast } from "./dom.js";
import { send } from "./socket.js";
import { state } from "./state.js";

const availability = (agent, free) => {
  if (!agent.online) return "offline";
  if (agent.status !== "available") return "away";
  return free ? "available" : "full";
};

const agentOption = (agent) => {
  const option = document.createElement("option");
  option.value = String(agent.id);
  const free = agent.online && agent.status === "available" && agent.load < agent.capacity;
  const why = availability(agent, free);
  text(option, t("transfer_option", { name: agent.display_name, why: t(`agent_${why}`), load: agent.load, capacity: agent.capacity }));
  option.disabled = !free;
  return option;
};

/* Fills every open transfer panel with the colleagues who could take a chat. */
export const onAgents = (frame) => {
  state.chats.forEach((chat) => {
    if (chat.pane.transferPanel.hidden) return;
    const select = chat.pane.transferSelect;
    select.textContent = "";
    const queue = document.createElement("option");
    queue.value = "";
    text(queue, t("requeued"));
    select.appendChild(queue);
    (frame.agents || []).forEach((agent) => select.appendChild(agentOption(agent)));
    const firstFree = select.querySelector("option:not([value='']):not(:disabled)");
    if (firstFree) select.value = firstFree.value;
    chat.pane.transferSubmit.disabled = false;
  });
};

export const showTransferPanel = (chat, open) => {
  chat.pane.transferPanel.hidden = !open;
  chat.pane.transfer.setAttribute("aria-expanded", open ? "true" : "false");
  if (!open) return;
  chat.pane.transferSubmit.disabled = true;
  chat.pane.transferSelect.textContent = "";
  const loading = document.createElement("option");
  text(loading, t("loading_agents"));
  chat.pane.transferSelect.appendChild(loading);
  if (!send({ type: "agents.list" })) {
    toast(t("take_offline"));
  }
  chat.pane.transferSelect.focus();
};

export const attachTransfer = (chat) => {
  const { transfer, transferPanel, transferSelect, transferSubmit } = chat.pane;
  transfer.addEventListener("click", () => {
    if (chat.status === "active") showTransferPanel(chat, transferPanel.hidden);
  });
  part(chat.pane.root, ".transfer-cancel").addEventListener("click", () => {
    showTransferPanel(chat, false);
    transfer.focus();
  });
  transferPanel.addEventListener("submit", (event) => {
    event.preventDefault();
    const value = transferSelect.value;
    const frame = {
      type: "conversation.transfer",
      conversation: chat.id,
      to_agent: value ? Number(value) : null,
    };
    if (send(frame)) transferSubmit.disabled = true;
    else toast(t("transfer_offline"));
  });
};
