"""What the API checks and computes, shared by the route modules: body checks, user properties,
stream filters, the model's classifier."""
