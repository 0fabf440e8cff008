"""A Python function for ORT on Lambda: a greeting for the name in its event.

The event arrives as a CloudEvent (ORT's default signature), whatever the trigger.
"""

import platform


def handler(event, context):
    data = event.get_data()
    name = data.get("name", "world") if isinstance(data, dict) else "world"
    return {
        "message": f"Hello, {name}!",
        "runtime": f"python {platform.python_version()}",
        "requestId": context.aws_request_id,
    }
