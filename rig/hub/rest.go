package hub

import "net/http"

// restHandler serves IoT Hub's service REST API and hilrun's own endpoints.
func (h *Hub) restHandler() http.Handler {
	return http.NotFoundHandler()
}
