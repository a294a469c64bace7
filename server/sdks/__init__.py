"""Drop-in routes for the SDKs and scripts of other analytics tools (Segment, RudderStack, PostHog,
Plausible, Umami): their messages mapped to our events, stored by the ingest pipeline."""
