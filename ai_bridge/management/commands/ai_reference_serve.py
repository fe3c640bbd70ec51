from django.conf import settings
from django.core.management.base import BaseCommand

from ai_bridge.reference_service import Behaviour, serve


class Command(BaseCommand):
    help = "Serve the bundled reference AI service (simple and openai protocols) over HTTP."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8001)
        parser.add_argument("--latency", type=float, default=0.2, help="seconds before each answer")
        parser.add_argument("--jitter", type=float, default=0.1, help="up to this many seconds more")
        parser.add_argument("--error-rate", type=float, default=0.0, help="share of answers that are 500")
        parser.add_argument("--malformed-rate", type=float, default=0.0, help="share of malformed answers")
        parser.add_argument("--api-key", default=None, help="required Bearer key (default AI_SERVICE_API_KEY)")
        parser.add_argument("--chunk-delay", type=float, default=Behaviour.chunk_delay,
                            help="seconds between the events of a streamed answer")
        parser.add_argument("--escalate-word", default=Behaviour.escalate_word,
                            help="a message containing it is escalated by the service (empty: never)")

    def handle(self, *args, host, port, latency, jitter, error_rate, malformed_rate, api_key, escalate_word,
               chunk_delay, **options):
        behaviour = Behaviour(api_key=settings.AI_SERVICE_API_KEY if api_key is None else api_key,
                              latency=latency, jitter=jitter, error_rate=error_rate, malformed_rate=malformed_rate,
                              escalate_word=escalate_word, chunk_delay=chunk_delay)
        server = serve(host, port, behaviour)
        self.stdout.write(f"Reference AI service on http://{host}:{server.server_port}/ "
                          f"(simple: POST /reply, openai: POST /v1/chat/completions)", ending="\n")
        self.stdout.flush()
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
