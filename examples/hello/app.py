"""The hello function: answers with a greeting for the event's name."""


def handler(event, context):
    name = event.get("name", "world") if isinstance(event, dict) else "world"
    return {
        "message": f"Hello, {name}!",
        "requestId": context.aws_request_id,
        "function": context.function_name,
    }
