// Starts Swagger UI on this server's own OpenAPI document (a file: the CSP allows no
// inline script).
window.SwaggerUIBundle({
  url: `${document.body.dataset.root || ""}/openapi.json`,
  dom_id: "#swagger-ui",
  deepLinking: true,
});
