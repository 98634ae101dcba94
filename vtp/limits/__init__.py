"""Per-user limits, so that one account cannot hurt a class: token buckets for what a
socket sends (:mod:`.tokenbucket`), coalescing outgoing queues for slow receivers
(:mod:`.outqueue`) and counted leases in Redis for caps that hold across processes
(:mod:`.leases`)."""
