"""One WebSocket channel implementation for every WebSocket endpoint (the SFU signalling
socket, :mod:`vtp.signalling.websocket`, and the classroom live channel,
:mod:`vtp.web.live`):

* :mod:`.socket` - :class:`~vtp.channel.socket.Channel`: authentication and renewal,
  changes of authority, the bounded outgoing queue, heartbeats, rate limits, close codes,
  shutdown;
* :mod:`.messages` - pydantic message models and the parser of a protocol's client
  messages;
* :mod:`.slots` - how many sockets a user may hold open, over every process;
* :mod:`.relay` - with several nodes, a channel about a room another node serves is
  relayed there over Redis (both kinds, one relay); :mod:`.relayed` - the room's node's
  end of such a channel.
"""
