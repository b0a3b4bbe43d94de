import redis


def test_real_redis_round_trip(redis_proc):
    client = redis.Redis(host=redis_proc.host, port=redis_proc.port)
    client.set("greeting", "hello")
    assert client.get("greeting") == b"hello"
