//! Protocol clients for the streaming server (WebSocket and SPDY), written as separate state
//! machines from the server sessions so that tests exercise two independent implementations.
