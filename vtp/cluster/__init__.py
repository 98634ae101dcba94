"""The cluster: equal VTP nodes that share what they must through Redis.

* :mod:`.nodes` - the node registry: each node's address, region and load, kept alive by
  a heartbeat (a node that stops beating leaves within ``VTP_NODE_TTL_S``);
* :mod:`.placement` - which node holds a room: chosen by load when the room first opens,
  atomically (a Lua script), kept while that node is alive;
* :mod:`.topic` - a pub/sub channel between the nodes, for what is live only (chat
  delivery to a class served by another node).

Core layer: Redis and the configuration only; what a node measures of itself (peers,
forwarded packets) is handed in by the application.
"""
