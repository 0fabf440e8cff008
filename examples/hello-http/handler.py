"""A function in Scaleway's style, served over HTTP by `ort serve`: the event is the request."""


def handle(event, context):
    name = (event.get("queryStringParameters") or {}).get("name", "world")
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "text/plain; charset=utf-8"},
        "body": f"Hello, {name}! ({event['httpMethod']} {event['path']}, {context.function_name})",
    }
