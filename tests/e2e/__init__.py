"""End-to-end tests: real `engage serve` processes driven over HTTP and websockets, as a member app
and a brand's systems would drive them. Every test here is marked `e2e`."""
