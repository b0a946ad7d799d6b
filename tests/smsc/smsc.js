// An SMSC for ccorch's tests, on the npm `smpp` package's server (independent of ccorch's
// SMPP client): binds a transceiver with the expected system_id and password, answers each
// submit_sm with a message id, writes what it got as one JSON line on stdout, and sends its
// delivery receipt a moment later (stat DELIVRD; UNDELIV for numbers ending in 0).
//   node smsc.js <port> <system_id> <password>
"use strict";
const smpp = require("smpp");

const [port, systemId, password] = process.argv.slice(2);
let nextId = 1000;

function log(fields) {
  process.stdout.write(JSON.stringify({ at: Date.now(), ...fields }) + "\n");
}

function stamp(d) {
  const p = (n) => String(n).padStart(2, "0");
  return `${p(d.getUTCFullYear() % 100)}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}${p(d.getUTCHours())}${p(d.getUTCMinutes())}`;
}

const server = smpp.createServer({ debug: false }, (session) => {
  session.on("bind_transceiver", (pdu) => {
    if (pdu.system_id !== systemId || pdu.password !== password) {
      log({ event: "bind_refused", system_id: pdu.system_id });
      session.send(pdu.response({ command_status: smpp.ESME_RBINDFAIL }));
      session.close();
      return;
    }
    log({ event: "bound", system_id: pdu.system_id });
    session.send(pdu.response({ system_id: "test-smsc" }));
  });
  session.on("enquire_link", (pdu) => session.send(pdu.response()));
  session.on("unbind", (pdu) => {
    session.send(pdu.response());
    session.close();
  });
  session.on("submit_sm", (pdu) => {
    const id = String(nextId++);
    const sm = pdu.short_message || {};
    log({
      event: "submit_sm",
      id,
      source: pdu.source_addr,
      source_ton: pdu.source_addr_ton,
      destination: pdu.destination_addr,
      destination_ton: pdu.dest_addr_ton,
      data_coding: pdu.data_coding,
      esm_class: pdu.esm_class,
      registered_delivery: pdu.registered_delivery,
      udh: (sm.udh || []).map((b) => b.toString("hex")),
      text: typeof sm === "string" ? sm : sm.message,
    });
    session.send(pdu.response({ message_id: id }));
    if (pdu.registered_delivery & 1) {
      const stat = pdu.destination_addr.endsWith("0") ? "UNDELIV" : "DELIVRD";
      const now = stamp(new Date());
      setTimeout(() => {
        session.deliver_sm({
          source_addr: pdu.destination_addr,
          destination_addr: pdu.source_addr,
          esm_class: smpp.ESM_CLASS.MC_DELIVERY_RECEIPT,
          short_message: `id:${id} sub:001 dlvrd:${stat === "DELIVRD" ? "001" : "000"} submit date:${now} done date:${now} stat:${stat} err:000 text:`,
          receipted_message_id: id,
          message_state: stat === "DELIVRD" ? 2 : 5,
        });
        log({ event: "receipt", id, stat });
      }, 200);
    }
  });
  session.on("error", (e) => log({ event: "session_error", error: String(e) }));
});

server.listen(Number(port), "127.0.0.1", () => log({ event: "listening", port: Number(port) }));
