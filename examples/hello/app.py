"""The hello function: answers with a greeting for the name in its event.

The event arrives as a CloudEvent (ORT's default signature; the cloudevents SDK's object):
whatever the trigger, the payload is its data.
"""


def handler(event, context):
    data = event.get_data()
    name = data.get("name", "world") if isinstance(data, dict) else "world"
    return {
        "message": f"Hello, {name}!",
        "requestId": context.aws_request_id,
        "function": context.function_name,
    }
