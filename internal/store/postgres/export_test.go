package postgres

// OpenWithMigrations is Open with the migrations of fsys instead of the
// embedded ones.
var OpenWithMigrations = open

// EmbeddedMigrations are the migrations Open applies, under migrations/.
var EmbeddedMigrations = embeddedMigrations
