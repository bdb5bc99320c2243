/* The web console's files (node/ui/: HTML, CSS and JS), embedded into the programs at build time
 * by node/ui/embed.cmake so that tandemd serves them and tandemctl writes standalone reports
 * without reading anything at run time. */
#ifndef TANDEM_NODE_UI_ASSETS_H
#define TANDEM_NODE_UI_ASSETS_H

#include <stddef.h>

#define TANDEM_UI_ASSET_NAME_MAX 64 /* longest asset file name */

struct tandem_ui_asset {
    const char *name;           /* file name, e.g. "app.js" */
    const unsigned char *bytes; /* NUL-terminated after len bytes */
    size_t len;
};

/* The generated table (build/gen/ui_assets.c). */
extern const struct tandem_ui_asset tandem_ui_assets[];
extern const unsigned tandem_ui_assets_count;

/* The asset called name ("app.js"), or NULL. */
const struct tandem_ui_asset *tandem_ui_asset_find(const char *name);

/* The Content-Type of an asset from its name's extension (html, css, js, svg, json), or NULL
 * for an extension the console does not use. */
const char *tandem_ui_content_type(const char *name);

#endif
