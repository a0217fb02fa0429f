#!/usr/bin/env node
// Black-box conformance peer: drives a ZK-protocol device with node-zklib 1.3.0 and prints what
// it read as JSON. The edge-agent test suite runs it against `device-sim zk` and compares every
// value with what the emulator holds.
//
// node-zklib 1.3.0 has no API for the device time or for writing a user, so those two steps go
// through its public `executeCmd` with the documented payloads (GET_TIME, USER_WRQ).
//
// Usage: node zklib_check.js --port N [--udp] (--read-only | --set-uid U --set-user-id ID --set-name NAME)
// Exit status 3 means node-zklib is not installed (run `npm install` in tests/peers).

'use strict';

let ZKLib;
try {
  ZKLib = require('node-zklib');
} catch (err) {
  console.error('node-zklib is not installed: run `npm install` in tests/peers');
  process.exit(3);
}

const CMD_GET_TIME = 201;
const CMD_USER_WRQ = 8;
const CMD_REFRESHDATA = 1013;

function parseArgs(argv) {
  const args = { udp: false };
  for (let i = 2; i < argv.length; i++) {
    const key = argv[i].replace(/^--/, '');
    if (key === 'udp') {
      args.udp = true;
    } else if (key === 'read-only') {
      args.readOnly = true;
    } else {
      args[key] = argv[++i];
    }
  }
  const needed = args.readOnly ? ['port'] : ['port', 'set-uid', 'set-user-id', 'set-name'];
  for (const required of needed) {
    if (args[required] === undefined) {
      console.error(`missing --${required}`);
      process.exit(2);
    }
  }
  return args;
}

// The ZK time encoding: every month has 31 days.
function decodeZkTime(t) {
  const second = t % 60; t = Math.floor(t / 60);
  const minute = t % 60; t = Math.floor(t / 60);
  const hour = t % 24; t = Math.floor(t / 24);
  const day = (t % 31) + 1; t = Math.floor(t / 31);
  const month = (t % 12) + 1;
  const year = Math.floor(t / 12) + 2000;
  const pad = (n) => String(n).padStart(2, '0');
  return `${year}-${pad(month)}-${pad(day)}T${pad(hour)}:${pad(minute)}:${pad(second)}`;
}

function localIso(date) {
  const pad = (n) => String(n).padStart(2, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}

// A user record in the layout node-zklib itself assumes for the transport: 72 bytes on TCP,
// 28 bytes on UDP.
function userRecord(udp, uid, userId, name) {
  if (udp) {
    const rec = Buffer.alloc(28);
    rec.writeUInt16LE(uid, 0);
    rec.write(name.slice(0, 8), 8, 'ascii');
    rec.writeUInt8(1, 21);
    rec.writeUInt32LE(Number(userId), 24);
    return rec;
  }
  const rec = Buffer.alloc(72);
  rec.writeUInt16LE(uid, 0);
  rec.write(name.slice(0, 23), 11, 'ascii');
  rec.writeUInt8(1, 39);
  rec.write(userId.slice(0, 23), 48, 'ascii');
  return rec;
}

// executeCmd resolves with whatever arrives next on the socket (TCP prefix removed): it does not
// match reply ids. Refuse anything but a lone ACK_OK so a stale reply is an error, not a value.
function replyData(reply, what) {
  const code = reply.readUInt16LE(0);
  if (code !== 2000) {
    throw new Error(`${what}: expected ACK_OK (2000), got code ${code}`);
  }
  return reply.subarray(8);
}

// node-zklib stops listening once a slice's data is complete and immediately sends FREE_DATA,
// so the device's closing ACK_OK (sent after its usual pacing pause) is taken as the FREE_DATA
// reply and the real FREE_DATA reply arrives after node-zklib returned. A real terminal paces
// the same way; wait for those trailing replies before the next command so it gets its own.
const settle = () => new Promise((resolve) => setTimeout(resolve, 300));

async function main() {
  const args = parseArgs(process.argv);
  const port = Number(args.port);
  // Bind UDP to an ephemeral port; node-zklib needs an explicit inport.
  const zk = new ZKLib('127.0.0.1', port, 10000, 0);
  await zk.createSocket();
  const out = { client: 'node-zklib', version: require('node-zklib/package.json').version };
  try {
    out.transport = zk.connectionType;
    if ((out.transport === 'udp') !== args.udp) {
      throw new Error(`expected ${args.udp ? 'udp' : 'tcp'} but node-zklib chose ${out.transport}`);
    }
    out.info = await zk.getInfo();
    const users = await zk.getUsers();
    if (users.err) throw users.err;
    out.users = users.data;
    await settle();
    const logs = await zk.getAttendances();
    if (logs.err) throw logs.err;
    out.attendance = logs.data.map((r) => ({
      userSn: r.userSn,
      deviceUserId: r.deviceUserId,
      recordTime: localIso(r.recordTime),
    }));
    await settle();
    const time = await zk.executeCmd(CMD_GET_TIME, '');
    out.time = decodeZkTime(replyData(time, 'GET_TIME').readUInt32LE(0));
    if (!args.readOnly) {
      const write = await zk.executeCmd(CMD_USER_WRQ,
        userRecord(args.udp, Number(args['set-uid']), args['set-user-id'], args['set-name']));
      out.set_user_reply = write.readUInt16LE(0);
      replyData(await zk.executeCmd(CMD_REFRESHDATA, ''), 'REFRESH_DATA');
      const after = await zk.getUsers();
      if (after.err) throw after.err;
      out.users_after_set = after.data;
    }
  } finally {
    await zk.disconnect();
  }
  // node-zklib leaves timers behind, so exit explicitly, but only once stdout (a pipe, written
  // asynchronously) has taken all of the output.
  process.stdout.write(JSON.stringify(out) + '\n', () => process.exit(0));
}

main().catch((err) => {
  console.error('node-zklib check failed:', err && err.message ? err.message : err);
  process.exit(1);
});
