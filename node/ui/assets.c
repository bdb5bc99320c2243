/* Looking up the web console's embedded files by name and typing them (node/ui/assets.h). */
#include "node/ui/assets.h"

#include <string.h>

const struct tandem_ui_asset *tandem_ui_asset_find(const char *name)
{
    for (unsigned i = 0; i < tandem_ui_assets_count; i++) {
        if (strcmp(tandem_ui_assets[i].name, name) == 0) {
            return &tandem_ui_assets[i];
        }
    }
    return NULL;
}

static const struct {
    const char *extension;
    const char *type;
} content_types[] = {
    {".html", "text/html; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},
    {".js", "text/javascript; charset=utf-8"},
    {".svg", "image/svg+xml"},
    {".json", "application/json"},
};

const char *tandem_ui_content_type(const char *name)
{
    const char *dot = strrchr(name, '.');
    for (size_t i = 0; dot != NULL && i < sizeof content_types / sizeof content_types[0]; i++) {
        if (strcmp(dot, content_types[i].extension) == 0) {
            return content_types[i].type;
        }
    }
    return NULL;
}
