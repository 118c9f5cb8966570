"""Cost per tenant and cost centre: usage read from Redis and the gateway, priced by a model."""
