//! The AiFace (AI06) WebSocket+JSON protocol: message types and the paging state machine.
