"""Scale-out backends on Redis: several app instances behind a load balancer behave as one.

- client.py        the one redis.asyncio client per process (RedisConnection) and RedisUnavailable
- eventlog.py      RedisEventLog: one Redis Stream per answer (resume on any instance, exactly once)
- bus.py           RedisBus: stop signals over pub/sub, reader presence keys
- conversations.py RedisConversationStore: bounded turn lists per tenant and conversation
- counters.py      RedisCounters (rate limits, budgets, concurrency slots; MemoryCounters is in memory.py)
- backends.py      open_redis_backends(settings, stack): builds them all for build_services()

Key layout (prefix = settings.redis.key_prefix; {...} is a Redis Cluster hash tag, ids are %-quoted):
  <p>:answer:{<message_id>}:events   stream, entry id <seq>-1, field e = event JSON
  <p>:answer:{<message_id>}:meta     hash: tenant, state (running|done), last (highest stored seq)
  <p>:answer:{<message_id>}:reader   string with PX ttl: a reader somewhere follows the answer
  <p>:stop                           pub/sub channel of stop signals
  <p>:conv:{<tenant>:<conversation_id>}:turns / :meta   list of JSON turns / creation marker
  <p>:rate:<key>  <p>:total:<key>:<window index>  <p>:slots:<key>   counters
"""
